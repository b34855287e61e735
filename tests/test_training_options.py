"""Training options that change what the loop does: evaluation during training, test-set
selection (labelled as such), the released code's BatchNorm-mode slip, and non-finite losses."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from scrd.config import preset
from scrd.data.phantom import make_phantom_dataset
from scrd.training import loop as train_loop
from scrd.training.train import TrainingError, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_phantom_dataset(
        tmp_path_factory.mktemp("phantom"), n_train=16, n_test_normal=4, n_test_abnormal=4, size=64, seed=3
    )


def _config(**overrides):
    base = {
        "model.arch": "mobilenet_v2",
        "model.weights": "none",
        "model.image_size": 64,
        "train.batch_size": 4,
        "train.iterations": 8,
        "noise.max_size": 24,
    }
    return preset("official").with_overrides({**base, **overrides})


def _bn_updates(run_dir) -> int:
    state = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
    return int(state["decoder.layer1.0.bn1.num_batches_tracked"])


@pytest.mark.parametrize("slip, expected_updates", [(False, 16), (True, 8)])
def test_bn_eval_after_validation_replicates_the_released_slip_only_when_asked(
    dataset, tmp_path, slip, expected_updates
):
    # 16 images / batch 4 = 4 iterations per epoch; evaluation every 2 iterations. Each
    # train-mode iteration updates BatchNorm twice (clean and noisy pass); with the slip, the two
    # iterations after each evaluation run in eval mode until the next epoch starts.
    config = _config(**{"train.eval_every": 2, "train.bn_eval_after_validation": slip})
    run = tmp_path / "run"
    train(config, dataset, run, progress=False, eval_source=dataset)
    assert _bn_updates(run) == expected_updates
    with open(run / "eval_log.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == [2, 4, 6, 8]


def test_best_on_test_selection_is_kept_apart_and_labelled(dataset, tmp_path):
    run = tmp_path / "run"
    train(
        _config(**{"train.eval_every": 4, "train.selection": "best_on_test"}),
        dataset,
        run,
        progress=False,
        eval_source=dataset,
    )
    final = json.loads((run / "model.json").read_text())
    best = json.loads((run / "best_on_test" / "model.json").read_text())
    assert "never selected on test labels" in final["selection"]
    assert "SELECTED ON TEST LABELS" in best["selection"]


def test_eval_every_without_an_evaluation_set_is_an_error(dataset, tmp_path):
    with pytest.raises(TrainingError, match="needs an evaluation set"):
        train(_config(**{"train.eval_every": 2}), dataset, tmp_path / "run", progress=False)


def test_abnormal_images_in_the_training_split_are_refused(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("L", (64, 64), 128).save(root / "images" / name)
    (root / "data.json").write_text(json.dumps({"train": {"0": ["a.png"], "1": ["b.png"]}, "test": {"0": [], "1": []}}))
    with pytest.raises(TrainingError, match=r"training split must hold normal images only; 1 are labelled abnormal"):
        train(_config(), root, tmp_path / "run", progress=False)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    real = train_loop.scrd_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms, out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            terms.loss = terms.loss * float("nan")
        return terms, out

    monkeypatch.setattr(train_loop, "scrd_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="iteration 5: the loss is nan"):
        train(_config(**{"train.checkpoint_every": 2}), dataset, run, progress=False)
    assert json.loads((run / "checkpoints" / "last.json").read_text())["iteration"] == 4
    assert not (run / "model.pt").exists()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_max_images_trains_on_a_seeded_subset_and_keeps_the_held_out_images(dataset):
    from scrd.config import ConfigError
    from scrd.training.data import load_training_images

    def images(**overrides):
        return load_training_images(dataset, _config(**{"train.holdout_fraction": 0.25, **overrides}))

    everything = images()
    limited = images(**{"train.max_images": 5})
    ids = [s.id for s in limited.fit]
    assert len(ids) == 5 and set(ids) < {s.id for s in everything.fit}
    assert ids == sorted(ids, key=[s.id for s in everything.fit].index)  # the dataset's order, kept
    # the held-out images (calibration, statistics) are the same with or without the limit
    assert [s.id for s in limited.holdout] == [s.id for s in everything.holdout]
    assert [s.id for s in images(**{"train.max_images": 5}).fit] == ids  # chosen by the seed: repeatable
    assert [s.id for s in images(**{"train.max_images": 5, "train.seed": 5}).fit] != ids
    assert len(images(**{"train.max_images": 1000}).fit) == len(everything.fit)
    with pytest.raises(ConfigError, match="max_images"):
        _config(**{"train.max_images": -1})
