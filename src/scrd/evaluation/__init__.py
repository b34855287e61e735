"""Scoring labelled and normal sets: the evaluate and calibrate jobs, the normal-image statistics
some scorings need, and the metrics.
"""
