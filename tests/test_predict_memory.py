"""predict streams: its peak memory does not grow with the number of images (benchmarks/
predict_memory.py measures the 1,000 vs 20,000 figures; this is the CI-sized check)."""

from __future__ import annotations

from scrd.filenames import PREDICTIONS_FILE
from scrd.lab.predict_memory import make_images, make_untrained_model, peak_rss_mib


def test_peak_memory_is_flat_in_the_number_of_images(tmp_path):
    make_untrained_model(tmp_path / "model")
    peaks = {}
    for count in (100, 1200):
        make_images(tmp_path / f"img{count}", count)
        peaks[count], _ = peak_rss_mib(
            tmp_path / "model", tmp_path / f"img{count}", tmp_path / f"out{count}", heatmaps=False
        )
        rows = (tmp_path / f"out{count}" / PREDICTIONS_FILE).read_text().splitlines()
        assert len(rows) == count + 1
    # Keeping each image or map would cost >= 48 KiB per image, i.e. > 50 MiB here.
    assert peaks[1200] - peaks[100] < 25, peaks
