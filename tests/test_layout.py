"""The package's structure: layers import only downwards, and every registry and file name has
one source that the CLI and the code read."""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

import scrd

SRC = Path(scrd.__file__).parent

# What each layer may import from scrd (besides itself). The pure model knows nothing of the
# method, the data or the jobs; the data layer knows nothing of the model.
ALLOWED = {
    "errors": set(),
    "filenames": set(),
    "storage": {"errors"},
    "device": {"errors"},
    "config": {"errors", "storage"},
    "model": {"errors", "config"},
    "data": {"errors", "config", "filenames", "storage"},
    "method": {"errors", "config", "device", "model"},
    "detector": {"errors", "config", "filenames", "storage", "device", "model", "method", "data", "__init__"},
    # the exported graph and the predict backends: on the detector, under the jobs
    "deploy": {"errors", "config", "storage", "model", "method", "data", "detector", "__init__"},
    "jobs": {
        "deploy",
        "errors",
        "config",
        "filenames",
        "storage",
        "device",
        "allocator",
        "model",
        "method",
        "data",
        "detector",
        "__init__",
    },
    "cli": {"errors", "config", "filenames", "data", "jobs", "deploy", "model", "__init__"},
    "__init__": set(),
    "__main__": {"cli"},  # python -m scrd, torchrun -m scrd
}


def _layer(module: str) -> str:
    """'scrd.model.backbones' -> 'model'; 'scrd' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """The scrd modules a file imports, at the top or inside functions, as absolute names."""
    module = "scrd." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "scrd")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "scrd":
                found.add(name)
    return found


def test_layers_import_only_downwards():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = _layer("scrd." + ".".join(path.relative_to(SRC).with_suffix("").parts))
        for target in _imports(path):
            there = _layer(target)
            if there != here and there not in ALLOWED[here]:
                wrong.append(f"{path.relative_to(SRC)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_import_checker_sees_relative_and_lazy_imports(tmp_path):
    assert _imports(SRC / "jobs" / "train.py") >= {"scrd.model", "scrd.jobs.evaluate", "scrd.data.dataset"}
    assert "scrd.jobs.calibrate" in _imports(SRC / "cli.py")  # imported inside a function


def test_cli_choices_are_the_registries():
    from scrd.cli import build_parser
    from scrd.config import ARCHITECTURES, PRESET_NAMES, PRESETS, ModelConfig
    from scrd.data.prepare import DATASETS
    from scrd.model import BACKBONES

    def choices(*path: str) -> tuple:
        parser = build_parser()
        for name in path[:-1]:
            sub = next(a for a in parser._actions if a.dest in ("command", "data_command"))
            parser = sub.choices[name]
        return tuple(next(a for a in parser._actions if a.dest == path[-1]).choices)

    assert ARCHITECTURES == tuple(BACKBONES) == typing.get_args(typing.get_type_hints(ModelConfig)["arch"])
    for command in ("train", "demo", "params", "benchmark"):
        assert choices(command, "arch") == ARCHITECTURES, command
    assert choices("train", "preset") == PRESET_NAMES == tuple(PRESETS) == choices("config", "preset")
    assert choices("data", "prepare", "dataset") == tuple(DATASETS)


RUN_FILE_NAME = re.compile(
    r"""["'](?:[\w./-]*/)?(model\.(?:pt|json)|config\.yaml|environment\.json|"""
    r"""\w*log\.csv|skipped\w*\.csv|\w*samples\.csv|metrics\.json|scores\.csv|"""
    r"""predictions\.csv|data\.json|last\.(?:pt|json)|prepare_report\.json)["']"""
)


@pytest.mark.parametrize("constant, literal", [("OFFICIAL_NOISE_SEED", "7698519916"), ("SIMPLEX_FRACTAL_STD", None)])
def test_constants_are_defined_once(constant, literal):
    text = {p: p.read_text() for p in SRC.rglob("*.py")}
    definitions = [p for p, t in text.items() if re.search(rf"^{constant}\s*=", t, re.M)]
    assert [p.relative_to(SRC).as_posix() for p in definitions] == ["config/schema.py"]
    if literal:
        assert [p.relative_to(SRC).as_posix() for p, t in text.items() if literal in t] == ["config/schema.py"]


def test_file_names_are_spelt_only_in_filenames_py():
    spelt = [
        f"{p.relative_to(SRC)}: {m.group(0)}"
        for p in SRC.rglob("*.py")
        if p.name != "filenames.py"
        for m in RUN_FILE_NAME.finditer(p.read_text())
    ]
    assert not spelt, spelt


def test_image_suffixes_have_one_registry():
    from scrd.data.prepare import brain_tumor
    from scrd.data.readers import PIL_SUFFIXES, supported_suffixes

    assert brain_tumor.PIL_SUFFIXES is PIL_SUFFIXES  # raw downloads are searched for what the readers read
    assert set(PIL_SUFFIXES) | {".dcm", ".dicom", ".nii", ".nii.gz"} <= set(supported_suffixes())
