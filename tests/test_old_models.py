"""Models saved by scrd 0.2 (the code before the scoring head) load and score as they did.

The old code is taken from this repository's history (commit ``OLD``), run in a subprocess to train
tiny models of each kind (a student with a memory bank and the fused scales, the knn reference, the
released code's setup) and to score a few images; today's code loads the same files and must give
the same scores. Skipped, saying why, where the clone has no history (a shallow copy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from scrd.detector import Detector
from scrd.errors import CheckpointError
from scrd.filenames import MODEL_META

REPO = Path(__file__).resolve().parents[1]
OLD = "9c05da4"  # the last commit of scrd 0.2's layout (statistics in model.json)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from scrd.config import preset
    from scrd.data.phantom import make_phantom_dataset
    from scrd.detector import Detector
    from scrd.jobs.calibrate import calibrate
    from scrd.jobs.train import train

    root = Path(sys.argv[1])
    data = make_phantom_dataset(root / "data", n_train=12, n_test_normal=3, n_test_abnormal=3, size=64, seed=5)
    tiny = {"model.arch": "mobilenet_v2", "model.weights": "none", "model.image_size": 64, "train.batch_size": 4,
            "train.iterations": 4, "noise.max_size": 24, "train.holdout_fraction": 0.25}
    images = sorted(str(p) for p in (data / "images").glob("*.png"))[:6]
    out = {"images": images}
    for name in ("denoising_knn", "knn", "official"):
        run = root / name
        train(preset(name).with_overrides(tiny), data, run, progress=False)
        calibrate(run, target_specificity=0.75)
        detector = Detector.load(run, "cpu", precision="fp32")
        batch = torch.stack([detector.load_image(p) for p in images])
        out[name] = detector.score(batch).scores.tolist()
    (root / "scores.json").write_text(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def old_models(tmp_path_factory) -> Path:
    git = shutil.which("git")
    if git is None or subprocess.run([git, "-C", str(REPO), "cat-file", "-e", f"{OLD}^{{commit}}"]).returncode:
        pytest.skip(f"commit {OLD} (scrd 0.2's code) is not in this clone's history; a full clone has it")
    root = tmp_path_factory.mktemp("old")
    archive = subprocess.run([git, "-C", str(REPO), "archive", OLD, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    # the same thread count as this process scores with: a float sum's order depends on it
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.mark.parametrize("name", ["denoising_knn", "knn", "official"])
def test_a_model_of_scrd_0_2_scores_as_it_did(old_models, name):
    expected = json.loads((old_models / "scores.json").read_text())
    assert json.loads((old_models / name / MODEL_META).read_text())["format"] == "scrd-checkpoint/1"
    detector = Detector.load(old_models / name, "cpu", precision="fp32")
    batch = torch.stack([detector.load_image(p) for p in expected["images"]])
    assert detector.score(batch).scores.tolist() == expected[name]  # to the last digit
    assert detector.threshold is not None  # its calibration came along
    if name == "denoising_knn":
        assert detector.has_memory_bank and not torch.isnan(detector.head.pair_mean).any()


def test_a_model_of_an_unknown_format_is_refused_with_the_fix(old_models, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(old_models / "official", run)
    meta = json.loads((run / MODEL_META).read_text())
    meta["format"] = "scrd-checkpoint/0"
    (run / MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"format 'scrd-checkpoint/0' is not one this scrd .* retrain"):
        Detector.load(run, "cpu")
