"""Peak memory of ``scrd predict`` as the number of images grows (it should stay flat).

Writes N small grey PNGs, saves an untrained mobilenet_v2 detector (64 px; memory, not accuracy,
is measured), then runs ``predict`` in a fresh process per N and prints its peak RSS.

    python benchmarks/predict_memory.py --counts 1000 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from scrd.lab.predict_memory import make_images, make_untrained_model, peak_rss_mib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--no-heatmaps", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_untrained_model(root / "model")
        print(f"{'images':>8} {'peak RSS (MiB)':>15} {'seconds':>9} {'images/s':>9}")
        for count in args.counts:
            images = root / f"images_{count}"
            t0 = time.perf_counter()
            make_images(images, count)
            rss, seconds = peak_rss_mib(root / "model", images, root / f"out_{count}", not args.no_heatmaps)
            print(
                f"{count:>8} {rss:>15.1f} {seconds:>9.1f} {count / seconds:>9.1f}   "
                f"(writing the images took {time.perf_counter() - t0 - seconds:.0f} s)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
