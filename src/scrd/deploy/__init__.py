"""Deployment: the exported ONNX graph (``scrd export``) and the backends ``scrd predict`` scores with."""
