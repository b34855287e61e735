"""knn.search ivf: the approximate search of the memory bank (an inverted-file index in torch).

Its distances are true distances to bank rows, so never below the exact search's and equal to them
where the probed lists hold the nearest row; it is rebuilt the same from the same bank; a detector
searching this way saves, loads and scores like one searching exactly, apart from the distances the
index misses; the ONNX graph holds the exact search and agrees with it on decisions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers import tiny_config

from scrd.cli import main
from scrd.detector import Detector
from scrd.errors import ConfigError
from scrd.scoring.bank import nearest_distance
from scrd.scoring.bank_index import IvfIndex, default_lists, kmeans, recall_at_1
from scrd.scoring.head import BankSearch
from scrd.training.train import train


def _clustered(rows: int, queries: int, dims: int = 32, clusters: int = 60, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = 4 * torch.randn(clusters, dims, generator=g)
    bank = centres[torch.randint(clusters, (rows,), generator=g)] + torch.randn(rows, dims, generator=g)
    q = centres[torch.randint(clusters, (queries,), generator=g)] + torch.randn(queries, dims, generator=g)
    return bank.contiguous(), q


def test_probing_every_list_is_the_exact_search():
    bank, q = _clustered(3000, 500)
    index = IvfIndex(bank, lists=40)
    torch.testing.assert_close(index.distances(q, probe=40), nearest_distance(q, bank), rtol=1e-5, atol=1e-5)


def test_fewer_lists_give_distances_never_below_the_exact_ones_and_recall_rises_with_the_probe():
    bank, q = _clustered(4000, 1000)
    exact = nearest_distance(q, bank)
    index = IvfIndex(bank, lists=64)
    recalls = []
    for probe in (1, 4, 16):
        found = index.distances(q, probe, chunk=300)  # chunks of queries do not change the answer
        assert (found >= exact * (1 - 1e-5) - 1e-5).all()  # a real bank row, never nearer than the nearest
        recalls.append(recall_at_1(found, exact))
    assert recalls == sorted(recalls) and recalls[0] < 1.0 and recalls[-1] > 0.95, recalls


def test_the_index_is_rebuilt_the_same_from_the_same_bank():
    bank, q = _clustered(2000, 300)
    a, b = IvfIndex(bank), IvfIndex(bank)
    assert a.lists == default_lists(2000) == round(2 * 2000**0.5)
    assert torch.equal(a.centroids, b.centroids) and a.offsets == b.offsets
    assert torch.equal(a.distances(q, 2), b.distances(q, 2))


def test_kmeans_finds_well_separated_clusters():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    g = torch.Generator().manual_seed(1)
    x = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in centres])
    found = kmeans(x, 3, seed=0)
    assert torch.cdist(centres, found).amin(1).max() < 0.1


def test_config_refuses_a_probe_below_one_and_negative_lists():
    with pytest.raises(ConfigError, match="knn.ivf_probe"):
        tiny_config("denoising_knn", knn__ivf_probe=0)
    with pytest.raises(ConfigError, match="knn.ivf_lists"):
        tiny_config("denoising_knn", knn__ivf_lists=-1)
    with pytest.raises(ConfigError, match="knn.search"):
        tiny_config("denoising_knn", knn__search="hnsw")


@pytest.fixture(scope="module")
def ivf_run(phantom_data, tmp_path_factory):
    """The default detector trained to search its bank through an index of 16 lists, one probed; a 10 %
    random bank (the knn preset's), large enough on tiny images for one list of 16 to miss rows."""
    run = tmp_path_factory.mktemp("ivf") / "run"
    config = tiny_config(
        "denoising_knn",
        train__iterations=4,
        train__holdout_fraction=0.25,
        knn__sampling="random",
        knn__fraction=0.1,
        knn__search="ivf",
        knn__ivf_lists=16,
        knn__ivf_probe=1,
    )
    train(config, phantom_data, run, progress=False)
    return run


def test_a_model_keeps_its_search_and_scores_through_the_index(ivf_run, phantom_data):
    detector = Detector.load(ivf_run, "cpu", "fp32")
    assert detector.head.bank_search == BankSearch("ivf", 16, 1)
    assert json.loads((ivf_run / "model.json").read_text())["config"]["knn"]["search"] == "ivf"
    images = torch.stack(
        [detector.load_image(str(p)) for p in sorted((phantom_data / "images").glob("test_*.png"))[3:9]]
    )
    exact = detector.head.with_bank_search(BankSearch("exact"))
    wide = detector.head.with_bank_search(BankSearch("ivf", 16, 16))  # every list probed
    outs = detector.score_heads(images, {"ivf": detector.head, "exact": exact, "wide": wide})
    teacher = detector.features(images).teacher
    found, truth = detector.head.unsmoothed_bank_map(teacher), exact.unsmoothed_bank_map(teacher)
    assert (found >= truth - 1e-4).all() and recall_at_1(found, truth) < 1.0  # one list of 16 misses some
    # heads that share a bank but search it differently are searched apart, not from one shared search
    assert not torch.equal(outs["ivf"].maps, outs["exact"].maps)
    torch.testing.assert_close(outs["wide"].maps, outs["exact"].maps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(detector.score(images).scores.float(), outs["ivf"].scores)


def test_onnx_holds_the_exact_search_and_agrees_with_torch_on_decisions(ivf_run, phantom_data, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed (pip install 'scrd[onnx]')")
    from scrd.deploy.onnx_export import export_onnx, sidecar_path
    from scrd.deploy.ort_detector import OrtDetector

    files = [str(p) for p in sorted((phantom_data / "images").glob("test_*.png"))]
    torch_ivf = Detector.load(ivf_run, "cpu", "fp32")
    scores = np.sort([r.score for r in torch_ivf.score_files(files, batch_size=8)])
    gap = int(np.argmax(np.diff(scores)))
    torch_ivf.metadata["calibration"] = {"threshold": float(scores[gap : gap + 2].mean())}
    torch_ivf.save(tmp_path / "model")
    out = tmp_path / "m.onnx"
    export_onnx(tmp_path / "model", out)  # its own parity check runs against the exact search
    assert json.loads(sidecar_path(out).read_text())["bank_search"] == "exact"
    ort = list(OrtDetector.load(out, "cpu").score_files(files, 8))
    reloaded = Detector.load(tmp_path / "model", "cpu", "fp32")
    via_index = list(reloaded.score_files(files, 8))
    reloaded.head = reloaded.head.with_bank_search(BankSearch("exact"))
    exact = list(reloaded.score_files(files, 8))
    np.testing.assert_allclose([r.score for r in ort], [r.score for r in exact], rtol=1e-4, atol=1e-4)
    assert [r.decision for r in ort] == [r.decision for r in via_index]


def _predicted(out) -> dict[str, float]:
    with open(out / "predictions.csv") as f:
        return {row["path"]: float(row["score"]) for row in csv.DictReader(f)}


def test_predict_searches_a_trained_bank_another_way_when_asked(ivf_run, tiny_run, phantom_data, tmp_path, capsys):
    """--set knn.search (and knn.ivf_*) on predict: the same bank searched another way; the choice is
    recorded with the predictions. A model without a bank refuses it, naming why."""
    files = [str(p) for p in sorted((phantom_data / "images").glob("test_*.png"))]
    args = ["predict", *files, "--model", str(ivf_run), "--no-heatmaps", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "exact"), "--set", "knn.search=exact"]) == 0
    assert main([*args, "--out", str(tmp_path / "ivf")]) == 0  # the model's own: one list of 16 probed
    exact, ivf = _predicted(tmp_path / "exact"), _predicted(tmp_path / "ivf")
    assert exact.keys() == ivf.keys() and len(exact) == len(files)
    # a distance the index finds is never below the exact one, and the score rises with the distances
    assert all(ivf[p] >= exact[p] - 1e-4 for p in exact) and exact != ivf
    info = json.loads((tmp_path / "exact" / "predict_info.json").read_text())
    assert info["data_options"] == {"knn.search": "exact"}
    capsys.readouterr()
    no_bank = ["predict", *files, "--model", str(tiny_run), "--out", str(tmp_path / "no")]
    assert main([*no_bank, "--set", "knn.search=ivf"]) == 2
    assert "--set knn.search: this model has no memory bank" in capsys.readouterr().err


def test_the_index_is_built_once_per_bank_even_when_heads_with_other_banks_share_its_cache(ivf_run):
    """The grids' bank analysis scores the run's head beside variants holding other banks, batch by
    batch: each bank's index is built once, not again whenever the other head was scored in between."""
    head = Detector.load(ivf_run, "cpu", "fp32").head
    other = head.variant(head.scoring)
    other.bank = head.bank[: len(head.bank) // 2].clone()
    first, second = head.bank_index(), other.bank_index()
    assert first is not second and (first.rows, second.rows) == (len(head.bank), len(head.bank) // 2)
    assert head.bank_index() is first and other.bank_index() is second
    assert head.with_bank_search(BankSearch("exact")).bank_index() is None
