"""The calibrated threshold's noise: how sensitivity and specificity move with the calibration normals."""

import json

import numpy as np
import pytest
from helpers import load_benchmark
from scipy.stats import beta

from scrd.data.phantom import make_phantom_dataset
from scrd.evaluation.evaluate import evaluate
from scrd.evaluation.metrics import conformal_threshold, metrics_at_threshold
from scrd.evaluation.threshold_noise import rates_at_conformal_thresholds, threshold_noise
from scrd.filenames import METRICS_FILE, REPORT_FILE


def test_each_draw_uses_the_calibration_rule_of_scrd_calibrate():
    rng = np.random.default_rng(3)
    calibration = rng.normal(size=(5, 40))
    left_over, abnormal = rng.normal(size=(5, 60)), rng.normal(1.5, 1.0, size=30)
    specificity, sensitivity = rates_at_conformal_thresholds(calibration, left_over, abnormal, 0.9)
    for row in range(5):
        threshold = conformal_threshold(calibration[row], 0.9)["threshold"]
        labels = np.r_[np.zeros(60), np.ones(30)]
        at = metrics_at_threshold(labels, np.r_[left_over[row], abnormal], threshold)
        assert specificity[row] == pytest.approx(at["specificity"])
        assert sensitivity[row] == pytest.approx(at["sensitivity"])


def test_specificity_over_draws_follows_the_conformal_beta_law():
    # continuous normal scores from a large pool: the specificity of a threshold from n of them is
    # Beta(k, n + 1 - k) (mean k / (n + 1), std ~0.0215 at n = 100, 95 %)
    normal = np.random.default_rng(0).normal(size=5000)
    noise = threshold_noise(normal, normal + 10.0, 100, 0.95, draws=800)
    law = beta(96, 5)
    assert noise["specificity"]["mean"] == pytest.approx(law.mean(), abs=0.003)
    assert noise["specificity"]["std"] == pytest.approx(law.std(), rel=0.12)
    # abnormal scores far above every normal: found at every threshold
    assert noise["sensitivity"]["mean"] == 1.0 and noise["sensitivity"]["std"] == 0.0


def test_more_calibration_normals_steady_the_sensitivity():
    rng = np.random.default_rng(1)
    normal, abnormal = rng.normal(size=1500), rng.normal(2.0, 1.0, size=600)
    small, large = (threshold_noise(normal, abnormal, n, 0.95, draws=400) for n in (100, 400))
    assert large["sensitivity"]["std"] < 0.7 * small["sensitivity"]["std"]
    # the same draws each call
    assert threshold_noise(normal, abnormal, 100, 0.95, draws=400) == small


def test_a_calibration_size_that_leaves_too_few_normals_is_refused():
    with pytest.raises(ValueError, match="needs at least 50 more normal scores than it draws; there are 80"):
        threshold_noise(np.zeros(80), np.ones(5), 31)


@pytest.mark.filterwarnings("ignore:AUROC .* is below 0.5")
def test_evaluate_reports_the_threshold_noise_at_the_calibration_size_and_twice_it(tiny_run, tmp_path):
    # tiny_run is calibrated on 4 held-out normals; 62 normal test images leave 50 over at 4 and 8 (not 16)
    data = make_phantom_dataset(tmp_path / "d", n_train=2, n_test_normal=62, n_test_abnormal=8, size=64, seed=5)
    evaluate(tiny_run, data, tmp_path / "e")
    noise = json.loads((tmp_path / "e" / METRICS_FILE).read_text())["threshold_noise"]
    assert [n["calibration_size"] for n in noise["by_size"]] == [4, 8]
    page = (tmp_path / "e" / REPORT_FILE).read_text()
    assert "How much the threshold moves with its calibration normals" in page
    assert f"sensitivity {noise['by_size'][1]['sensitivity']['mean']:.3f}" in page


def test_the_benchmark_reports_a_size_the_set_cannot_afford_instead_of_failing(tmp_path, capsys):
    # benchmarks/threshold_noise.py on a run calibrated on 200 normals, evaluated on 300: n = 200 leaves
    # 100 to measure on, 2n = 400 cannot be drawn; the row says so and the other figures are printed
    benchmark = load_benchmark("threshold_noise")
    rng = np.random.default_rng(1)
    normal, abnormal = rng.normal(size=300), rng.normal(2.0, 1.0, size=200)
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    lines = ["path,label,score,alpha_1,alpha_2,alpha_3"]
    lines += [f"n{i}.png,0,{s},0.3,0.3,0.4" for i, s in enumerate(normal)]
    lines += [f"a{i}.png,1,{s},0.3,0.3,0.4" for i, s in enumerate(abnormal)]
    (run / "evaluation" / "scores.csv").write_text("\n".join(lines) + "\n")
    calibration = {"threshold": 1.645, "target_specificity": 0.95, "n_images": 200}
    (run / "model.json").write_text(json.dumps({"calibration": calibration}))
    assert benchmark.main([str(run), "--draws", "50"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row.startswith(f"| {run} | 200 |")
    assert "– (needs 450 normals, the set has 300)" in row
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4].count("±") == 2  # the noise at n: sensitivity ± std (specificity ± std)
