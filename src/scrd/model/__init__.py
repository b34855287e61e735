"""The pure torch model: teachers by name, OCBE bottleneck, student decoder, scale head, SCRD.

Nothing here knows about files of a run, datasets, losses or optimisers (a test checks that this
package imports nothing from the data, scoring, losses or training packages).
"""

from .backbones import BACKBONES, BackboneSpec, Teacher, backbone_spec
from .official import from_official_state_dict, load_official_state_dict, to_official_state_dict
from .params import parameter_counts
from .scrd import SCRD, SCRDOutput, build_model
from .teacher_only import TeacherOnly
from .weights import find_imagenet_weights, install_weight_file, load_teacher_weights, resolve_imagenet_weights

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "SCRD",
    "SCRDOutput",
    "Teacher",
    "TeacherOnly",
    "backbone_spec",
    "build_model",
    "find_imagenet_weights",
    "from_official_state_dict",
    "install_weight_file",
    "load_official_state_dict",
    "load_teacher_weights",
    "parameter_counts",
    "resolve_imagenet_weights",
    "to_official_state_dict",
]
