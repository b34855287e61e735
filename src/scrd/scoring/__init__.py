"""Everything between the networks' features and an image score: per-scale distances, smoothing,
scale fusion, the memory bank, the reduction.
"""
