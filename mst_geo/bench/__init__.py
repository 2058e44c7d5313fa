"""mst_geo.bench"""
