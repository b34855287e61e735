"""Sharded prediction: which inputs one process of N scores, its part files, and their merge.

Shard I of N takes the I-th contiguous block of the inputs in their sorted order, cut at batch
boundaries (batches ``i*b//N`` to ``(i+1)*b//N`` of the ``b`` batches one process would score):
disjoint, covering, the same on every machine, with no padding (a DistributedSampler repeats
images to even out the ranks, which would duplicate rows). Cutting at batch boundaries puts every
image in the batch it has in a one-process run: CPU kernels may round a score differently in a
batch of another size, and the merged CSV is meant to equal the one-process CSV exactly. Each shard
writes ``predictions.shard-I-of-N.csv`` (and its own skipped list and settings) into the shared
output folder, heat maps into the shared ``heatmaps/`` (names are unique per path), and a
``.done`` file when it has scored all of its block. Whichever shard finishes last merges the
parts, in shard order, into ``predictions.csv``: the rows, in the order, of a one-process run
(sorted by path). ``scrd predict --merge`` does the same by hand.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

from ..errors import ConfigError, InputError
from ..filenames import HEATMAP_DIR, PREDICT_INFO, PREDICTIONS_FILE, SKIPPED_FILE
from ..storage import TMP_SUFFIX, atomic_write_text, read_json, remove_stale_temporaries, write_json

T = TypeVar("T")
_PART = re.compile(r"^predictions\.shard-(\d+)-of-(\d+)\.csv$")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based, as torchrun's RANK and a 0-based Slurm array index
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"--shard {self.index}/{self.count}: need 0 <= I < N (I counts from 0)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4 for the first of four shards")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[T], batch_size: int = 1) -> list[T]:
        """This shard's block of ``items`` (in their given, sorted order), whole batches of
        ``batch_size`` each, as a one-process run would batch them."""
        batches = -(-len(items) // batch_size)
        start, stop = (batches * i // self.count * batch_size for i in (self.index, self.index + 1))
        return list(items[start:stop])

    def name(self, file_name: str) -> str:
        """``predictions.csv`` -> ``predictions.shard-I-of-N.csv``."""
        stem, dot, suffix = file_name.partition(".")
        return f"{stem}.shard-{self.index}-of-{self.count}{dot}{suffix}"


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard torchrun assigns (RANK of WORLD_SIZE), or None outside a multi-process launch."""
    env = os.environ if env is None else env
    world = env.get("WORLD_SIZE")
    if world is None or int(world) <= 1:
        return None
    if "RANK" not in env:
        raise ConfigError(f"WORLD_SIZE={world} is set but RANK is not; launch with torchrun or pass --shard I/N")
    return Shard(int(env["RANK"]), int(world))


def resolve_shard(flag: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard I/N`` when given, else the launcher's RANK/WORLD_SIZE, else None (one process)."""
    return Shard.parse(flag) if flag else shard_from_env(env)


def device_for_rank(device: str, env: Mapping[str, str] | None = None) -> str:
    """``--device auto`` under torchrun on a machine with GPUs: this process's own GPU (LOCAL_RANK),
    not every process on cuda:0."""
    env = os.environ if env is None else env
    if device != "auto" or "LOCAL_RANK" not in env:
        return device
    import torch

    local = int(env["LOCAL_RANK"])
    return f"cuda:{local}" if torch.cuda.is_available() and local < torch.cuda.device_count() else device


@dataclass(frozen=True)
class OutputNames:
    """The files one predict process owns in the output folder."""

    predictions: str
    skipped: str
    info: str
    done: str | None  # written when a shard has scored its whole block; None for one process

    @classmethod
    def of(cls, shard: Shard | None) -> OutputNames:
        if shard is None:
            return cls(PREDICTIONS_FILE, SKIPPED_FILE, PREDICT_INFO, None)
        return cls(shard.name(PREDICTIONS_FILE), shard.name(SKIPPED_FILE), shard.name(PREDICT_INFO), _done(shard))


def _done(shard: Shard) -> str:
    return shard.name(PREDICTIONS_FILE) + ".done"


def remove_own_temporaries(out_dir: Path, names: OutputNames) -> None:
    """What a killed write of this shard left; other shards' temporaries may be live writes."""
    for name in (names.predictions, names.skipped, names.info, names.done):
        for stale in out_dir.glob(f".{name}.*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)


def mark_done(out_dir: Path, names: OutputNames, rows: int) -> None:
    atomic_write_text(out_dir / names.done, f"{rows}\n")


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    if not table:
        raise InputError(f"{path}: empty part file (no header)")
    return table[0], table[1:]


def _parts(out_dir: Path) -> dict[int, tuple[int, Path]]:
    found: dict[int, tuple[int, Path]] = {}
    counts = set()
    for path in sorted(out_dir.glob("predictions.shard-*-of-*.csv")):
        match = _PART.match(path.name)
        if match:
            index, count = int(match.group(1)), int(match.group(2))
            counts.add(count)
            found[index] = (count, path)
    if not found:
        raise InputError(f"{out_dir}: no part files (predictions.shard-I-of-N.csv) to merge")
    if len(counts) > 1:
        raise InputError(
            f"{out_dir}: holds parts of runs with different shard counts ({', '.join(map(str, sorted(counts)))}); "
            "keep one sharding per output folder (or start it afresh)"
        )
    return found


def shards_finished(out_dir: Path, count: int) -> bool:
    return all((out_dir / _done(Shard(i, count))).is_file() for i in range(count))


def merge_shards(out_dir: str | Path) -> tuple[Path, int]:
    """Merge the part files of ``out_dir`` into ``predictions.csv`` sorted by path (and the skipped
    lists into one); returns (the CSV, its rows). Refuses parts that are missing, unfinished or
    written by different models or settings."""
    out_dir = Path(out_dir)
    parts = _parts(out_dir)
    count = next(iter(parts.values()))[0]
    missing = [str(i) for i in range(count) if i not in parts]
    if missing:
        raise InputError(f"{out_dir}: shard(s) {', '.join(missing)} of {count} have written nothing yet")
    infos, header, rows, skipped, batch_sizes = [], None, [], [], set()
    for index in range(count):
        shard = Shard(index, count)
        done = out_dir / _done(shard)
        part_header, part_rows = _read_rows(parts[index][1])
        if not done.is_file():
            raise InputError(
                f"{parts[index][1]}: shard {shard} has not finished ({len(part_rows)} rows so far); run it "
                f"again with --shard {shard} (it resumes) and merge when every shard is done"
            )
        if int(done.read_text().strip() or -1) != len(part_rows):
            raise InputError(f"{parts[index][1]}: has {len(part_rows)} rows, but {done.name} says {done.read_text()}")
        if header is not None and part_header != header:
            raise InputError(f"{parts[index][1]}: columns {part_header} differ from the other parts' {header}")
        header = part_header
        rows += part_rows
        info = read_json(out_dir / shard.name(PREDICT_INFO))
        for own in ("shard", "assigned"):  # the rest must agree between shards
            info.pop(own, None)
        batch_sizes.add(info.pop("batch_size", None))
        infos.append(info)
        skipped_part = out_dir / shard.name(SKIPPED_FILE)
        if skipped_part.is_file():
            skipped += _read_rows(skipped_part)[1]
    if len(batch_sizes) > 1:  # shards cut at batch boundaries: other sizes, other cuts
        raise InputError(
            f"{out_dir}: the shards were run with different --batch-size ({', '.join(map(str, sorted(batch_sizes)))}), "
            "so their parts may overlap or leave gaps; run them all with one --batch-size (pass --fresh to start over)"
        )
    if any(info != infos[0] for info in infos):
        raise InputError(f"{out_dir}: the shards were run with different models or settings; they cannot be merged")
    paths = [row[0] for row in rows]
    if len(set(paths)) != len(paths):
        raise InputError(f"{out_dir}: an image appears in more than one part; were the inputs changed between shards?")
    csv_path = out_dir / PREDICTIONS_FILE
    atomic_write_text(csv_path, _csv_text([header, *rows]))
    if skipped:
        atomic_write_text(out_dir / SKIPPED_FILE, _csv_text([["path", "reason"], *skipped]))
    write_json(out_dir / PREDICT_INFO, infos[0])
    remove_stale_temporaries(out_dir / HEATMAP_DIR)  # every shard has finished: no live writes there
    return csv_path, len(rows)


def _csv_text(table: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(table)
    return buffer.getvalue()
