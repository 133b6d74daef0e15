"""Bootstrap confidence intervals: seeded, sensible, and honest about degenerate input."""
from __future__ import annotations

import numpy as np
import pytest

from avlib.errors import AvlibError
from avlib.metrics.stats import bootstrap_ci, mean_with_ci, percentile_interval


def test_interval_is_seeded_and_holds_the_mean():
    values = np.random.default_rng(0).normal(0.3, 0.1, size=50)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high


def test_interval_matches_the_normal_approximation():
    values = np.random.default_rng(1).normal(0.0, 1.0, size=400)
    low, high = bootstrap_ci(values)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)


def test_more_data_narrows_the_interval():
    rng = np.random.default_rng(2)
    small, large = bootstrap_ci(rng.normal(size=10)), bootstrap_ci(rng.normal(size=1000))
    assert large[1] - large[0] < small[1] - small[0]


def test_degenerate_inputs():
    assert bootstrap_ci([0.7]) == [0.7, 0.7]
    with pytest.raises(AvlibError, match="zero values"):
        bootstrap_ci([])
    assert percentile_interval(np.arange(101.0)) == pytest.approx([2.5, 97.5])


def test_summary_reports_n_and_method():
    summary = mean_with_ci([0.0, 1.0, 1.0, 0.0], seed=3)
    assert summary["mean"] == 0.5 and summary["n"] == 4
    assert "seed 3" in summary["ci_method"]
