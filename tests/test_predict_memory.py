"""predict streams: its peak memory does not grow with the number of images (benchmarks/
predict_memory.py measures the 1,000 vs 20,000 figures; this is the CI-sized check)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "predict_memory.py"


def _bench():
    spec = importlib.util.spec_from_file_location("predict_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_memory_is_flat_in_the_number_of_images(tmp_path):
    bench = _bench()
    bench.make_model(tmp_path / "model")
    peaks = {}
    for count in (100, 1200):
        bench.make_images(tmp_path / f"img{count}", count)
        peaks[count], _ = bench.peak_rss_mib(tmp_path / "model", tmp_path / f"img{count}",
                                             tmp_path / f"out{count}", heatmaps=False)
        rows = (tmp_path / f"out{count}" / "predictions.csv").read_text().splitlines()
        assert len(rows) == count + 1
    # Keeping each image or map would cost >= 48 KiB per image, i.e. > 50 MiB here.
    assert peaks[1200] - peaks[100] < 25, peaks
