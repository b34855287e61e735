"""The exported ONNX graph's contract, shared by the exporter and the onnxruntime backend: its
input and output names, the sidecar file beside it, and how ONNX Runtime opens it."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError

ONNX_FORMAT = "scrd-onnx/1"
INPUT, OUTPUTS = "images", ("anomaly_map", "score")


def sidecar_path(onnx_file: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (never a run's own ``model.json``)."""
    onnx_file = Path(onnx_file)
    return onnx_file.with_name(onnx_file.name + ".json")


def require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export and the onnxruntime backend need the onnx extra ({exc.name} is missing): "
            "pip install 'scrd[onnx]'"
        ) from None


def ort_session(onnx_file: str | Path, device: str = "auto"):
    """An ONNX Runtime session on the CPU, or CUDA when ``device`` asks for it and it is there."""
    require_onnx()
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") or (device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers()):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
        index = device.partition(":")[2] or "0"
        providers = [("CUDAExecutionProvider", {"device_id": int(index)}), *providers]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT warns about unused initialisers otherwise
    # torch's thread count (OMP_NUM_THREADS, which torchrun sets per process), not every core per process
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        return ort.InferenceSession(str(onnx_file), options, providers=providers)
    except Exception as exc:  # ORT raises its own types for a bad or truncated file
        raise CheckpointError(f"{onnx_file}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from exc
