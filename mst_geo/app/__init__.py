"""mst_geo.app"""
