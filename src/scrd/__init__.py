"""scrd: Scale-aware Contrastive Reverse Distillation for unsupervised medical anomaly detection.

Heavy modules (torch, torchvision) are imported lazily by the submodules that need them, so
``import scrd`` and ``scrd --help`` stay fast.
"""

__version__ = "0.1.0"
