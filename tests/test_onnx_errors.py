"""Bad input to export and to the onnxruntime backend: a clear error naming the file and the problem."""

from __future__ import annotations

import pytest

from scrd.cli import main
from scrd.errors import CheckpointError, ConfigError
from scrd.model.weights import sha256_of
from scrd.storage import write_json

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")

from scrd.deploy.onnx_export import ONNX_FORMAT, export_onnx, sidecar_path  # noqa: E402
from scrd.deploy.ort_detector import OrtDetector  # noqa: E402


def test_export_wants_an_onnx_file_name(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.bin: give a file name ending in \.onnx"):
        export_onnx(tmp_path / "run", tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="unknown|choose one of"):
        export_onnx(tmp_path / "run", tmp_path / "m.onnx", exporter="jit")


def test_export_of_a_missing_model_names_it(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "nothing: no trained model here" in capsys.readouterr().err


def test_sidecar_must_be_beside_and_match(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not a graph")
    with pytest.raises(CheckpointError, match=r"m\.onnx: its m\.onnx\.json .* is not beside it"):
        OrtDetector.load(onnx, "cpu")
    write_json(sidecar_path(onnx), {"format": ONNX_FORMAT, "onnx_sha256": "0" * 64, "model": {}})
    with pytest.raises(CheckpointError, match="was written for another m.onnx"):
        OrtDetector.load(onnx, "cpu")
    write_json(sidecar_path(onnx), {"format": ONNX_FORMAT, "onnx_sha256": sha256_of(onnx), "model": {}})
    with pytest.raises(CheckpointError, match="m.onnx: ONNX Runtime cannot load it"):
        OrtDetector.load(onnx, "cpu")


def test_onnxruntime_backend_wants_the_onnx_file(tmp_path):
    with pytest.raises(CheckpointError, match="needs the .onnx file"):
        OrtDetector.load(tmp_path, "cpu")
    with pytest.raises(ConfigError, match="float32"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        OrtDetector.load(tmp_path / "m.onnx", "cpu", precision="bf16")
