"""Training objectives: the reverse-distillation losses (RD4AD, the released SCRD form, Eq. 4,
Algorithm 2), one loss evaluation on a clean batch and its noisy twin, and the scale head's
separation objective.
"""
