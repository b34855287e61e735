"""Studies, not the product: the experiment runner, the paper's tables, the benchmark and the
analyses they report. No product package imports this one.
"""
