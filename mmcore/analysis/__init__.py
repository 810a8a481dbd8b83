"""Explore a collection: UMAP maps, HDBSCAN clusters, GLOSH outliers, near-duplicates, cluster names.

Front door: `analyze` (mmcore.analysis.maps) returns an `Analysis` carrying the parameters that made it.
"""
