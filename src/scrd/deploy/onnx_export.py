"""``scrd export --format onnx``: one ONNX graph from a [0, 1] image batch to maps and scores.

The graph (:class:`~scrd.deploy.graph.ScoringGraph`) has a dynamic batch axis and holds the
normalisation, the network, the Gaussian smoothing and the configured score reduction. Beside
``FILE.onnx`` goes ``FILE.onnx.json``: the input contract, the threshold and the model's whole
``model.json`` (config, calibration, provenance), which ``scrd predict --backend onnxruntime``
reads to decode images exactly as the torch backend does. The export checks itself: ONNX Runtime
must reproduce PyTorch's maps and scores on a test batch, or the file is not kept.

Two exporters give the same graph: ``torchscript`` (torch.onnx's tracer; the default, as it
exported mobilenet_v2 in 7 s where ``dynamo`` took 155 s on our loaded 2-core machine) and
``dynamo`` (torch.export based, the one torch.onnx develops further). The tracer is deprecated by
torch; should a torch version drop it, pass ``--exporter dynamo``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..detector import Detector, resolve_model_path
from ..errors import CheckpointError, ConfigError
from ..model.weights import sha256_of
from ..scoring.head import BankSearch
from ..storage import write_json
from ..version import __version__
from .graph import ScoringGraph
from .onnx_format import INPUT, ONNX_FORMAT, OUTPUTS, ort_session, require_onnx, sidecar_path

# What the self-check accepts (the parity tests hold every architecture to these): differences relative
# to the largest magnitude among the check's maps, and among its scores. Relative to the values' scale,
# not to each value: a map or score in units of normal variation sits around 0, where float rounding in
# another order is large relative to the value and means nothing (issue 27: a fresh model's check failed
# on 3.6e-4 absolute in maps of that kind).
SCORE_RTOL, MAP_RTOL = 1e-4, 1e-4
EXPORTERS = ("torchscript", "dynamo")


@dataclass
class ExportResult:
    onnx: Path
    sidecar: Path
    max_map_diff: float  # self-check on a random batch: max |ORT − torch| of the maps, over max |map|
    max_score_rel_diff: float  # and of the scores, over max |score|


def export_onnx(
    model: str | Path, out: str | Path, opset: int = 18, exporter: str = "torchscript", check_batch: int = 3
) -> ExportResult:
    """Export the detector of ``model`` (a run directory or model.pt) to ``out`` (an .onnx file)."""
    if exporter not in EXPORTERS:
        raise ConfigError(f"--exporter {exporter}: choose one of {', '.join(EXPORTERS)}")
    require_onnx()
    out = Path(out)
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: give a file name ending in .onnx")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name ending in .onnx")
    model_file = resolve_model_path(model)
    detector = Detector.load(model, device="cpu", precision="fp32", channels_last=False)
    if detector.head.has_bank:  # the graph holds the exact search (MatMul + ReduceMin), whatever torch uses
        detector.head = detector.head.with_bank_search(BankSearch("exact"))
    size = detector.image_size
    graph = ScoringGraph(detector).eval()
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    out.parent.mkdir(parents=True, exist_ok=True)
    if exporter == "dynamo":
        options = {"dynamic_shapes": {"images01": {0: torch.export.Dim("batch", min=1)}}, "external_data": False}
    else:
        options = {"dynamic_axes": {name: {0: "batch"} for name in (INPUT, *OUTPUTS)}}
    # The exporters narrate each step (dynamo) or warn about shapes fixed in the trace (the tracer:
    # the image size and the number of scales are constants of the graph, the batch is not).
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(out),
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            opset_version=opset,
            dynamo=exporter == "dynamo",
            **options,
        )
    map_diff, score_diff = _self_check(out, detector, check_batch)
    if map_diff > MAP_RTOL or score_diff > SCORE_RTOL:
        out.unlink(missing_ok=True)
        raise CheckpointError(
            f"{out}: the exported graph drifts from PyTorch (maps {map_diff:.3g}, scores {score_diff:.3g}, "
            f"relative to their largest magnitude; limits {MAP_RTOL:g}, {SCORE_RTOL:g}); the file was removed"
        )
    sidecar = sidecar_path(out)
    write_json(sidecar, _contract(detector, out, model_file, opset, exporter))
    return ExportResult(out, sidecar, map_diff, score_diff)


def _self_check(onnx_file: Path, detector: Detector, batch: int) -> tuple[float, float]:
    size = detector.image_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps, scores = ort_session(onnx_file, "cpu").run(list(OUTPUTS), {INPUT: images.numpy()})
    reference = detector.score(images)
    return relative_difference(maps, reference.maps), relative_difference(scores, reference.scores.float())


def relative_difference(got, expected: torch.Tensor) -> float:
    """max |got − expected| over max |expected|: the parity measure of exported maps and scores."""
    got = torch.as_tensor(got, dtype=torch.float32)
    scale = expected.abs().max().clamp_min(1e-12)
    return float((got - expected).abs().max() / scale)


def _contract(detector: Detector, onnx_file: Path, model_file: Path, opset: int, exporter: str) -> dict:
    size, scoring = detector.image_size, detector.config.scoring
    return {
        "format": ONNX_FORMAT,
        "onnx_file": onnx_file.name,
        "onnx_sha256": sha256_of(onnx_file),
        "exported_from": str(model_file),
        "exported_from_sha256": sha256_of(model_file),
        "scrd_version": __version__,
        "torch_version": torch.__version__,
        "opset": opset,
        "exporter": exporter,
        "input": {
            "name": INPUT,
            "shape": ["batch", 3, size, size],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "channels": "3 (grey images replicated to RGB, as scrd reads them)",
            "resize": f"bilinear (align_corners=False) to {size}x{size}, aspect ratio not kept",
            "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "applied": "inside the graph"},
            "reading": "the model's data options (model.config.data); scrd predict applies them",
        },
        # how the graph searches the memory bank; the model's own torch search (knn.search) may be the
        # approximate ivf index, whose distances are never below these (docs/deploy.md)
        "bank_search": "exact" if detector.head.has_bank else None,
        "outputs": {
            "anomaly_map": {"shape": ["batch", size, size], "dtype": "float32", "smoothing_sigma": scoring.sigma},
            "score": {
                "shape": ["batch"],
                "dtype": "float32",
                "reduction": scoring.score,
                "top_k_percent": scoring.top_k_percent,
            },
        },
        "threshold": detector.threshold,
        "decision": "abnormal when score >= threshold",
        "model": detector.metadata,
    }
