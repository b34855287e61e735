"""scoring.choose = label_free: the image score chosen without labels, on held-out normals and altered
copies of them (focal and diffuse). Two synthetic worlds where the right choice is known, and a
training run that stores the choice."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from scrd.anomalies.label_free import CHOICE_KINDS, scoring_choice_set
from scrd.config import preset
from scrd.data.transforms import normalize
from scrd.detector import Detector
from scrd.errors import TrainingError
from scrd.filenames import MODEL_META
from scrd.model import TeacherOnly
from scrd.scoring.bank import patch_vectors
from scrd.training.scoring_choice import candidates, choose_scoring
from scrd.training.train import train


class LocalMeans(torch.nn.Module):
    """A stand-in teacher whose features are the image's local means: a memory bank of them then maps
    how far each place's intensity is from every intensity the bank holds."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        grey = x.mean(1, keepdim=True)
        return [F.avg_pool2d(grey, s) for s in (4, 8, 16)]


def _detector(levels: list[float]) -> Detector:
    """The knn method over :class:`LocalMeans`, its bank the patches of flat images at ``levels``."""
    config = preset("knn").with_overrides(
        {"model.arch": "mobilenet_v2", "model.weights": "none", "model.image_size": 64, "noise.max_size": 24}
    )
    network = TeacherOnly("mobilenet_v2")
    network.teacher = LocalMeans()
    flats = torch.stack([torch.full((3, 64, 64), v) for v in levels])
    with torch.no_grad():
        vectors = patch_vectors(network.teacher(normalize(flats)), (2, 3), 3)
    bank = vectors.permute(0, 2, 3, 1).reshape(-1, vectors.shape[1]).unique(dim=0)
    return Detector.from_network(network, config, torch.device("cpu"), {}, "fp32", False, bank)


def test_where_normal_images_are_full_of_bright_specks_the_mean_is_chosen():
    """Specks fill every image's highest values, normal or not: only the mean still sees a large faint
    opacity, so the choice must be the mean."""
    g = torch.Generator().manual_seed(0)
    normals = torch.full((60, 3, 64, 64), 0.5)
    for image in normals:
        for _ in range(80):
            y, x = torch.randint(2, 62, (2,), generator=g).tolist()
            image[:, y - 2 : y + 2, x - 2 : x + 2] += 0.4
    scoring, record = choose_scoring(_detector([0.5]), normals, seed=0)
    assert record["chosen"].endswith("-mean") and scoring.score == "mean"
    best_other = max(v["auroc"] for k, v in record["candidates"].items() if not k.endswith("-mean"))
    assert record["candidates"][record["chosen"]]["auroc"] > best_other + 0.01


def test_where_normal_images_are_clean_a_top_score_is_chosen():
    """Flat images of any brightness (all in the bank): a focal blob stands out in the highest values,
    while the mean dilutes it, so the choice must be the max or a top k %."""
    g = torch.Generator().manual_seed(0)
    normals = torch.stack([torch.full((3, 64, 64), float(v)) for v in 0.4 + 0.2 * torch.rand(60, generator=g)])
    scoring, record = choose_scoring(_detector(torch.linspace(0.35, 0.65, 31).tolist()), normals, seed=0)
    assert scoring.score in ("max", "top_k") and not record["chosen"].endswith("-mean")
    assert record["candidates"][record["chosen"]]["auroc"] > record["candidates"]["sum-pool1-mean"]["auroc"] + 0.05


def test_the_choice_set_alternates_focal_and_diffuse_kinds():
    normals = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    images, labels, kinds = scoring_choice_set(normals, seed=3)
    assert kinds[8:] == list(CHOICE_KINDS) * 2 and labels.tolist() == [0] * 8 + [1] * 8
    assert torch.equal(images[:8], normals) and all((images[8 + i] != normals[i]).any() for i in range(8))
    again, _, _ = scoring_choice_set(normals, seed=3)
    assert torch.equal(again, images)
    with pytest.raises(ValueError, match="at least 4"):
        scoring_choice_set(normals[:3], seed=0)


def test_the_candidates_start_with_the_configured_scoring():
    names = list(candidates(preset("denoising_knn").scoring))
    assert names[0] == "normal_softmax-pool3-top5" and len(names) == 20
    assert list(candidates(preset("knn").scoring, has_student=False)) == [
        "sum-pool1-max",
        "sum-pool1-mean",
        "sum-pool1-top20",
        "sum-pool1-top5",
        "sum-pool1-top1",
    ]


def test_training_stores_the_chosen_scoring_and_the_table(phantom_data, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        "denoising_knn", train__iterations=2, train__holdout_fraction=0.25, scoring__choose="label_free"
    )
    train(config, phantom_data, run, progress=False)
    meta = json.loads((run / MODEL_META).read_text())
    record = meta["scoring_choice"]
    assert len(record["candidates"]) == 20 and record["configured"] == "normal_softmax-pool3-top5"
    best = max(v["auroc"] for v in record["candidates"].values())
    assert record["candidates"][record["chosen"]]["auroc"] == best
    detector = Detector.load(run, "cpu")
    fusion, pool, score = record["chosen"].split("-")
    assert detector.config.scoring.scale_fusion == fusion and f"pool{detector.config.scoring.feature_pool}" == pool
    assert detector.score(torch.rand(2, 3, 64, 64)).scores.shape == (2,)  # its statistics were measured


def test_too_few_held_out_images_are_refused(phantom_data, tmp_path):
    config = tiny_config(
        "denoising_knn",
        train__iterations=2,
        train__holdout_fraction=0.1,
        train__holdout_min=0,
        scoring__choose="label_free",
    )
    with pytest.raises(TrainingError, match="at least 4 are needed"):
        train(config, phantom_data, tmp_path / "run", progress=False)
