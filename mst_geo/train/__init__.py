"""mst_geo.train"""
