"""ONNX Runtime scores what PyTorch scores: every architecture (random weights), the default detector
(a student with a memory bank, the bank inside the graph) and a scoring path with every other option,
phantom images and the real brain MRI validation images, batch sizes 1 and 7: scores and maps within
1e-4 of their largest magnitude, the same decisions at the model's threshold."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SHARED_DATA, needs_brain_tumor

from scrd.config import ARCHITECTURES, preset
from scrd.data.phantom import make_phantom_dataset
from scrd.detector import Detector
from scrd.model import SCRD

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")

from scrd.deploy.onnx_export import MAP_RTOL, SCORE_RTOL, export_onnx, relative_difference, sidecar_path  # noqa: E402  # noqa: E402
from scrd.deploy.ort_detector import OrtDetector  # noqa: E402
from scrd.inference.predict import predict  # noqa: E402
from scrd.runs.runtime import Runtime  # noqa: E402

SIZE = 64  # small enough for wide_resnet50_2 on a CPU in seconds

# A scoring path that is not the default: every option the graph must hold inside it.
SCORING = {
    "scoring.score": "top_k",
    "scoring.feature_pool": 3,
    "scoring.alpha_weighting": "weighted",
    "scoring.scale_fusion": "standardized",
    "scoring.scale_weights": (1.0, 0.5, 2.0),
}


def _brain_files(count_normal: int = 4, count_abnormal: int = 3) -> list[str]:
    split = json.loads((SHARED_DATA / "data.json").read_text())["test"]
    names = sorted(split["0"])[:count_normal] + sorted(split["1"])[:count_abnormal]
    return [str(SHARED_DATA / "images" / n) for n in names]


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory) -> list[str]:
    data = make_phantom_dataset(
        tmp_path_factory.mktemp("parity"), n_train=0, n_test_normal=4, n_test_abnormal=3, size=SIZE, seed=3
    )
    return sorted(str(p) for p in (data / "images").glob("*.png"))


@dataclass
class Exported:
    torch: Detector
    ort: OrtDetector
    model: Path  # the run-like folder of the torch model
    onnx: Path


def _threshold_in_the_widest_gap(detector: Detector, files: list[str]) -> float:
    """A threshold with scores on both sides and none near it."""
    scores = np.sort([r.score for r in detector.score_files(files, batch_size=7)])
    gap = int(np.argmax(np.diff(scores)))
    return float(scores[gap : gap + 2].mean())


def _default_detector(arch: str, normals: Path) -> Detector:
    """The default preset (the student with a memory bank) on a random ``arch``: the bank fitted on
    ``normals``' training images, the statistics measured on them."""
    from scrd.data.layouts import load_samples
    from scrd.training.fit_bank import fit_memory_bank

    config = preset("denoising_knn").with_overrides(
        {"model.arch": arch, "model.weights": "none", "model.image_size": SIZE, "noise.max_size": 24}
    )
    samples = load_samples(normals, "train")
    bank = fit_memory_bank(config.with_overrides({"train.device": "cpu"}), samples, progress=False)[1]
    detector = Detector.from_network(SCRD(arch).eval(), config, torch.device("cpu"), {}, "fp32", False, bank)
    detector.fit_statistics(iter([torch.stack([detector.load_image(s.path) for s in samples])]))
    return detector


def _options_detector(arch: str, files: list[str]) -> Detector:
    config = preset("official").with_overrides(
        {"model.arch": arch, "model.weights": "none", "model.image_size": SIZE, "noise.max_size": 24, **SCORING}
    )
    detector = Detector.from_network(SCRD(arch).eval(), config, torch.device("cpu"), {}, "fp32", False)
    detector.fit_statistics(iter([torch.stack([detector.load_image(f) for f in files])]))
    return detector


@pytest.fixture(scope="module")
def phantom_normals(tmp_path_factory) -> Path:
    return make_phantom_dataset(
        tmp_path_factory.mktemp("normals"), n_train=6, n_test_normal=0, n_test_abnormal=0, size=SIZE, seed=4
    )


@pytest.fixture(scope="module", params=[(a, k) for a in ARCHITECTURES for k in ("default", "options")], ids=str)
def exported(request, tmp_path_factory, phantom_files, phantom_normals) -> Exported:
    """One architecture with random weights, as the default detector (with its bank) or with every
    other scoring option, saved and exported, its threshold in the widest gap of the phantoms' scores."""
    arch, kind = request.param
    torch.manual_seed(ARCHITECTURES.index(arch))
    detector = _default_detector(arch, phantom_normals) if kind == "default" else _options_detector(arch, phantom_files)
    detector.metadata["calibration"] = {"threshold": _threshold_in_the_widest_gap(detector, phantom_files)}
    folder = tmp_path_factory.mktemp(f"{arch}-{kind}")
    detector.save(folder / "model")
    onnx = folder / f"{arch}.onnx"
    export_onnx(folder / "model", onnx)
    return Exported(
        Detector.load(folder / "model", "cpu", "fp32"), OrtDetector.load(onnx, "cpu"), folder / "model", onnx
    )


def _assert_parity(reference: Detector, ort: OrtDetector, files: list[str], batch_size: int) -> None:
    expected = list(reference.score_files(files, batch_size))
    got = list(ort.score_files(files, batch_size))
    assert [r.path for r in got] == [r.path for r in expected]
    score_rel = relative_difference([g.score for g in got], torch.tensor([e.score for e in expected]))
    map_rel = relative_difference(torch.stack([g.map for g in got]), torch.stack([e.map for e in expected]))
    assert score_rel <= SCORE_RTOL, f"scores differ by {score_rel:.3g} relative"
    assert map_rel <= MAP_RTOL, f"maps differ by {map_rel:.3g} relative"
    assert [g.decision for g in got] == [e.decision for e in expected]
    print(f"{reference.config.model.arch} batch {batch_size}: scores {score_rel:.2e}, maps {map_rel:.2e} relative")


@pytest.mark.parametrize("batch_size", [1, 7])
def test_onnx_matches_torch_on_phantoms(exported, phantom_files, batch_size):
    reference, ort = exported.torch, exported.ort
    _assert_parity(reference, ort, phantom_files, batch_size)
    assert {r.decision for r in ort.score_files(phantom_files, batch_size)} == {"normal", "abnormal"}


@needs_brain_tumor
@pytest.mark.parametrize("batch_size", [1, 7])
def test_onnx_matches_torch_on_brain_mri(exported, batch_size):
    _assert_parity(exported.torch, exported.ort, _brain_files(), batch_size)


def test_contract_describes_the_graph(exported):
    reference, ort = exported.torch, exported.ort
    contract = json.loads(sidecar_path(ort.path).read_text())
    assert contract["input"]["shape"] == ["batch", 3, SIZE, SIZE]
    assert contract["input"]["range"] == [0.0, 1.0]
    assert contract["outputs"]["score"]["reduction"] == "top_k"
    if reference.has_memory_bank:  # the bank is inside the graph: the file holds its floats
        assert ort.path.stat().st_size > reference.head.bank.numel() * 4
    assert contract["threshold"] == reference.threshold
    assert contract["model"]["config"] == reference.config.to_dict()
    inputs = ort.session.get_inputs()
    assert [i.name for i in inputs] == ["images"] and isinstance(inputs[0].shape[0], str)  # a dynamic batch axis


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_with_onnxruntime_writes_what_torch_writes(exported, phantom_files, tmp_path):
    """Same rows, decisions and heat-map files; scores within the parity tolerance."""
    from PIL import Image

    a = predict(
        exported.model, phantom_files, tmp_path / "torch", Runtime(batch_size=4, device="cpu", precision="fp32")
    )
    b = predict(
        exported.onnx, phantom_files, tmp_path / "ort", Runtime(batch_size=4, device="cpu"), backend="onnxruntime"
    )
    expected, got = _rows(a.csv), _rows(b.csv)
    assert [(r["path"], r["decision"], r["heatmap"]) for r in got] == [
        (r["path"], r["decision"], r["heatmap"]) for r in expected
    ]
    scale = max(abs(float(e["score"])) for e in expected)
    for g, e in zip(got, expected):
        assert abs(float(g["score"]) - float(e["score"])) <= SCORE_RTOL * scale
        heat_g = np.asarray(Image.open(tmp_path / "ort" / g["heatmap"]), dtype=int)
        heat_e = np.asarray(Image.open(tmp_path / "torch" / e["heatmap"]), dtype=int)
        assert heat_g.shape == heat_e.shape and np.abs(heat_g - heat_e).max() <= 1  # colour rounding at most


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_parity(tmp_path, phantom_files):
    """The torch.export-based exporter (``--exporter dynamo``), on one architecture: it is slow."""
    torch.manual_seed(0)
    config = preset("official").with_overrides(
        {"model.arch": "mobilenet_v2", "model.weights": "none", "model.image_size": SIZE, "noise.max_size": 24}
    )
    Detector.from_network(SCRD("mobilenet_v2").eval(), config, torch.device("cpu")).save(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "m.onnx", exporter="dynamo")
    reference, ort = Detector.load(tmp_path / "model", "cpu", "fp32"), OrtDetector.load(tmp_path / "m.onnx", "cpu")
    for batch_size in (1, 7):
        _assert_parity(reference, ort, phantom_files, batch_size)


def _small_denoising(**overrides):
    """The denoising preset on a random 64-px mobilenet_v2, with dotted-key ``overrides``."""
    small = {"model.arch": "mobilenet_v2", "model.weights": "none", "model.image_size": SIZE, "noise.max_size": 24}
    return preset("denoising").with_overrides({**small, **overrides})


def test_a_spatial_scale_head_exports_with_its_per_location_weights(tmp_path, phantom_files):
    torch.manual_seed(5)
    config = _small_denoising(
        **{
            "model.scale_head": "spatial",
            "loss.alpha_objective": "separation",
            "scoring.alpha_weighting": "weighted",
            "scoring.scale_fusion": "sum",
        }
    )
    model = SCRD("mobilenet_v2", "spatial").eval()
    with torch.no_grad():  # a head far from uniform, so that the weighting shows in the maps
        model.scale_head.logits.weight.mul_(50)
    Detector.from_network(model, config, torch.device("cpu")).save(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "m.onnx")
    reference, ort = Detector.load(tmp_path / "model", "cpu", "fp32"), OrtDetector.load(tmp_path / "m.onnx", "cpu")
    for batch_size in (1, 7):
        _assert_parity(reference, ort, phantom_files, batch_size)


def test_a_fusion_on_the_normal_scale_exports_with_its_statistics(tmp_path, phantom_files):
    """scale_fusion = normal_softmax: the stored statistics and the per-image softmax are in the graph."""
    torch.manual_seed(6)
    config = _small_denoising(
        **{
            "scoring.scale_fusion": "normal_softmax",
            "scoring.fusion_temperature": 0.5,
            "scoring.scale_weights": (1.0, 1.0, 0.5),
        }
    )
    detector = Detector.from_network(SCRD("mobilenet_v2").eval(), config, torch.device("cpu"), {}, "fp32", False)
    images = torch.stack([detector.load_image(f) for f in phantom_files])
    detector.fit_statistics(iter([images[:4], images[4:]]))
    detector.save(tmp_path / "model")
    export_onnx(tmp_path / "model", tmp_path / "m.onnx")
    reference, ort = Detector.load(tmp_path / "model", "cpu", "fp32"), OrtDetector.load(tmp_path / "m.onnx", "cpu")
    assert float(reference.score(images).alpha.amax(1).min()) < 0.99  # the weights vary: not one scale
    for batch_size in (1, 7):
        _assert_parity(reference, ort, phantom_files, batch_size)
