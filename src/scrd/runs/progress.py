"""Progress of a long phase on stderr: a tqdm bar with counts, rate and the time left.

Every job that scores or fits many images shows one (``--no-progress``: none), so a phase of
minutes is never silent. ``weight`` counts what an item is worth: a batch of images counts its
images, so the bar says "images 120/900" whatever the batch size.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "img",
    weight: Callable[[T], int] | None = None,
    initial: int = 0,
) -> Iterator[T]:
    """Yield the items of ``iterable``, advancing a bar on stderr by ``weight(item)`` (default 1)
    after each; ``total`` in the same units (None: counts only). Nothing is shown when not
    ``enabled``. The bar is closed when the loop ends, breaks or raises."""
    if not enabled:
        yield from iterable
        return
    bar = progress_bar(total, desc, unit, initial)
    try:
        for item in iterable:
            yield item
            bar.update(1 if weight is None else weight(item))
    finally:
        bar.close()


def progress_bar(total: int | None, desc: str, unit: str = "img", initial: int = 0) -> Any:
    """A tqdm bar on stderr, for loops that advance it themselves (``update(n)``, ``close()``)."""
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1.0
    )


class phase:
    """``with phase("measuring statistics", enabled):`` prints the phase on stderr when it starts and
    how long it took when it ends: a step of a job that has no per-image bar is not silent either."""

    def __init__(self, what: str, enabled: bool = True) -> None:
        self.what, self.enabled = what, enabled

    def __enter__(self) -> phase:
        import time

        self.started = time.perf_counter()
        if self.enabled:
            print(f"{self.what} ...", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        import time

        if self.enabled and exc[0] is None:
            print(f"{self.what}: done in {time.perf_counter() - self.started:.0f} s", file=sys.stderr, flush=True)


def batch_images(batch: tuple[dict[str, Any], Any] | dict[str, Any]) -> int:
    """The images a loader batch held, read and skipped: the ``weight`` of a scoring loop's items
    (a ``(batch, scored)`` pair of ``Detector.iterate`` or a batch alone)."""
    items = batch[0] if isinstance(batch, tuple) else batch
    return len(items["path"]) + len(items.get("skipped", ()))
