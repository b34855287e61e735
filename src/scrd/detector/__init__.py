"""A trained detector ready to score images (:mod:`.core`), and its saved format (:mod:`.files`)."""

from .core import REDUCTIONS, Detector, FileScore, Scored, decision_of
from .files import resolve_model_path
from .parts import build_head, build_network

__all__ = [
    "REDUCTIONS",
    "Detector",
    "FileScore",
    "Scored",
    "build_head",
    "build_network",
    "decision_of",
    "resolve_model_path",
]
