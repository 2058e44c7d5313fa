"""mst_geo.geo"""
