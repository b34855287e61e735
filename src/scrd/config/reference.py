"""The option reference of docs/configuration.md, written from the schema itself.

Each option's text is the comment beside or above its field in :mod:`.sections`, its default the
field's, and the presets that change it are read from :mod:`.presets`, so the table cannot drift
from the code (``scrd config --reference`` prints it; a test compares it with the docs).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

from . import sections
from .presets import PRESETS
from .sections import SECTION_TYPES, is_replay


def _comments() -> dict[tuple[str, str], str]:
    """(section class, field) -> the comment lines above the field and the comment on its line."""
    source = inspect.getsource(sections)
    lines = source.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, row = [], item.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            inline = lines[item.lineno - 1].partition("  # ")[2].strip()
            found[(node.name, item.target.id)] = " ".join([*above, inline]).strip()
    return found


def _value(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`"
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def _changed_by(dotted: str) -> str:
    names = [f"{p.name} ({_value(p.overrides[dotted])})" for p in PRESETS.values() if dotted in p.overrides]
    return ", ".join(names)


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|")


def reference_tables() -> str:
    """Two markdown tables, everyday options and replay/study options, one row per option."""
    comments = _comments()
    everyday = ["| option | default | what it does | presets that change it |", "|---|---|---|---|"]
    replays = list(everyday)
    for name, cls in SECTION_TYPES.items():
        for f in dataclasses.fields(cls):
            dotted = f"{name}.{f.name}"
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            row = f"| `{dotted}` | {_value(default)} | {_cell(comments.get((cls.__name__, f.name), ''))} | "
            row += f"{_changed_by(dotted)} |"
            (replays if is_replay(cls, f.name) else everyday).append(row)
    return "\n".join(
        [
            "### Everyday options",
            "",
            *everyday,
            "",
            "### Replay and study options",
            "",
            "Options that exist to replay the paper, the released code or one of our studies; the presets set them.",
            "",
            *replays,
            "",
        ]
    )
