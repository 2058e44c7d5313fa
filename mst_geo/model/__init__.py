"""mst_geo.model"""
