"""Synthetic anomalies: the simplex and Gaussian patches SCRD trains with, and the cut-paste and
blob kinds the label-free criterion uses (never trained on).
"""
