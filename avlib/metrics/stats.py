"""Seeded bootstrap confidence intervals.

No public implementation of these metrics reports uncertainty, so a small test set can make
two models look different when they are not. Every metric avlib writes therefore carries
its N and a 95% percentile-bootstrap interval, drawn from a seeded generator so that the
same inputs give the same interval on every run.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from avlib.errors import AvlibError

CONFIDENCE = 0.95
N_RESAMPLES = 10_000


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """The central ``confidence`` interval of bootstrap replicates, as ``[lo, hi]``."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    lo, hi = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100.0 - tail])
    return [float(lo), float(hi)]


def bootstrap_ci(values: Sequence[float], n_resamples: int = N_RESAMPLES, seed: int = 0,
                 confidence: float = CONFIDENCE) -> list[float]:
    """Percentile-bootstrap interval of the mean of per-item ``values`` (e.g. per video).

    With a single value the interval collapses to that value: there is no spread to resample.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise AvlibError("cannot compute a confidence interval of zero values "
                         "(check that the input folder holds videos)")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(n_resamples, values.size))  # (B, N)
    return percentile_interval(values[picks].mean(axis=1), confidence)


def bootstrap_replicates(statistic: Callable[[np.random.Generator], float],
                         n_resamples: int, seed: int = 0) -> np.ndarray:
    """``statistic(rng)`` evaluated ``n_resamples`` times with one seeded generator.

    For statistics that are not a mean (FVD): the caller resamples inside ``statistic``.
    """
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng) for _ in range(n_resamples)], dtype=np.float64)


def mean_with_ci(values: Sequence[float], seed: int = 0,
                 n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """``{"mean", "ci95", "n", "ci_method"}`` for per-item metric values."""
    values = np.asarray(values, dtype=np.float64)
    ci95 = bootstrap_ci(values, n_resamples, seed)  # raises on an empty list
    return {
        "mean": float(values.mean()),
        "ci95": ci95,
        "n": int(values.size),
        "ci_method": f"percentile bootstrap over items, {n_resamples} resamples, seed {seed}",
    }
