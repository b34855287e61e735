"""Micro-batching: images from concurrent requests are scored together, by one worker thread.

Requests put their items into one bounded queue. The worker takes the oldest item, waits until the
batch is full (``max_batch``, the model's batch size) or until that item has waited ``max_wait_s``
(a few milliseconds: a lone request is not held up for long), and runs the whole batch at once, so
under load the model sees full batches and a single request costs little more than its own pass.

The queue is bounded: when a request's items do not fit, :meth:`MicroBatcher.submit` raises
:class:`QueueFull` at once (the service answers 503 with Retry-After) instead of letting waiting work
and memory grow without limit. A request's items go in all together or not at all. A batch that
fails is run again image by image, so one image that breaks the model fails only its own request;
the worker survives every exception and records it in :meth:`MicroBatcher.stats`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue cannot take the request's images now; try again later (HTTP 503)."""


class Stopped(Exception):
    """The batcher was stopped (the service is shutting down)."""


@dataclass
class _Job:
    item: Any
    future: Future
    queued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """``run_batch(items) -> results`` (one result per item, in order) on batches of up to
    ``max_batch`` queued items, in one worker thread; at most ``capacity`` items wait."""

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_batch: int,
        max_wait_s: float,
        capacity: int,
        name: str = "scrd-scorer",
    ) -> None:
        if max_batch < 1 or capacity < 1 or max_wait_s < 0:
            raise ValueError("max_batch and capacity must be >= 1 and max_wait_s >= 0")
        self.run_batch, self.max_batch, self.max_wait_s, self.capacity = run_batch, max_batch, max_wait_s, capacity
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._stats = {"batches": 0, "images": 0, "largest_batch": 0, "failed_batches": 0, "rejected": 0}
        self._scoring = 0  # images in the batch being run now

    def start(self) -> MicroBatcher:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued, scoring = len(self._queue), self._scoring
            return {**self._stats, "queued": queued, "scoring": scoring, "capacity": self.capacity, "alive": self.alive}

    def submit(self, items: Sequence[Any]) -> list[Future]:
        """Queue ``items`` together and return a future per item; :class:`QueueFull` when they do not
        all fit, :class:`Stopped` once the batcher is stopping."""
        with self._cond:
            if self._stopping or not self._thread.is_alive():
                raise Stopped("the scoring worker is not running")
            if len(self._queue) + len(items) > self.capacity:
                self._stats["rejected"] += 1
                raise QueueFull(
                    f"the queue holds {len(self._queue)} of {self.capacity} images; "
                    f"{len(items)} more do not fit: try again shortly"
                )
            jobs = [_Job(item, Future()) for item in items]
            self._queue.extend(jobs)
            self._cond.notify_all()
        return [job.future for job in jobs]

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch being scored, fail what still waits (:class:`Stopped`), end the thread."""
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in left:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Stopped("the service is shutting down"))
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            deadline = self._queue[0].queued + self.max_wait_s  # the oldest item waits at most this long
            while len(self._queue) < self.max_batch and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._stopping:
                return None
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]  # a cancelled one: gone
            if not jobs:
                continue
            with self._cond:
                self._scoring = len(jobs)
            ok = self._run(jobs)
            with self._cond:
                self._scoring = 0
                self._stats["batches"] += 1
                self._stats["images"] += len(jobs)
                self._stats["largest_batch"] = max(self._stats["largest_batch"], len(jobs))
                self._stats["failed_batches"] += 0 if ok else 1
            if not ok and len(jobs) > 1:
                for job in jobs:  # one at a time: only the image that fails fails
                    self._run([job])

    def _run(self, jobs: list[_Job]) -> bool:
        """Run ``jobs`` and set their results (True); on a failure, a lone job gets the exception and
        several are left for a retry one by one (False)."""
        try:
            results = list(self.run_batch([job.item for job in jobs]))
            if len(results) != len(jobs):
                raise RuntimeError(f"run_batch returned {len(results)} results for {len(jobs)} items")
        except Exception as exc:  # the worker must outlive any failure
            log.exception("scoring a batch of %d image(s) failed", len(jobs))
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
            return False
        for job, result in zip(jobs, results):
            job.future.set_result(result)
        return True


__all__ = ["MicroBatcher", "QueueFull", "Stopped"]
