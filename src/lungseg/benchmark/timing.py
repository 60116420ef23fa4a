"""Latency and throughput measurement: warm-up, then timed runs until the median is stable."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long to measure one thing: at least ``min_runs`` and ``min_seconds``, at most ``max_seconds``."""

    warmup: int = 3
    warmup_seconds: float = 5.0  # a slow call stops warming up after this long (but runs at least once)
    min_runs: int = 10
    min_seconds: float = 3.0
    max_seconds: float = 20.0
    max_runs: int = 200


QUICK = Budget(warmup=1, min_runs=3, min_seconds=0.0, max_seconds=2.0, max_runs=5)
FULL = Budget()
STAGES = Budget(warmup=2, min_runs=7, min_seconds=1.0, max_seconds=8.0)  # one stage of a row already warmed up


@dataclass
class Timing:
    seconds: list[float]

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.seconds, 50) * 1e3)

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.seconds, 95) * 1e3)

    @property
    def runs(self) -> int:
        return len(self.seconds)


def time_call(fn, budget: Budget = FULL, sync=None) -> Timing:
    """Wall time of ``fn()`` after ``budget.warmup`` untimed calls; ``sync()`` (e.g. CUDA) ends each run."""
    start = time.perf_counter()
    for _ in range(budget.warmup):
        fn()
        if time.perf_counter() - start > budget.warmup_seconds:
            break
    if sync:
        sync()
    seconds: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        seconds.append(time.perf_counter() - t)
        spent = time.perf_counter() - start
        enough = len(seconds) >= budget.min_runs and spent >= budget.min_seconds
        if enough or len(seconds) >= budget.max_runs or (spent >= budget.max_seconds and len(seconds) >= 3):
            return Timing(seconds)


def best_throughput(run_batch, image: np.ndarray, batch_sizes, budget: Budget = FULL, sync=None) -> tuple[float, int]:
    """(images per second, batch size) at the batch size that gives the most images per second."""
    best = (0.0, 0)
    for n in batch_sizes:
        batch = np.repeat(image[None], n, axis=0)
        timing = time_call(lambda: run_batch(batch), budget, sync)
        seconds = float(np.median(timing.seconds))
        rate = n / seconds
        if rate > best[0]:
            best = (rate, n)
        elif rate < 0.9 * best[0]:
            break  # past the best batch size: larger batches only get slower
        if seconds > budget.max_seconds / 4:
            break  # one batch already takes seconds: the rate has settled, larger ones cost minutes
    return best
