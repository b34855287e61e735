"""The SCRD method on top of the model: synthetic anomalies, losses, the loss step, anomaly maps,
image scores and metrics."""
