"""mst_geo.data"""
