"""Aggregation across seeds on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from accelerl.stats import area_under_curve, bootstrap, iqm


def test_iqm_of_known_inputs():
    assert iqm(np.arange(8)) == pytest.approx(3.5)  # middle four: 2, 3, 4, 5
    assert iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # the outlier is trimmed
    assert iqm([5.0]) == 5.0
    # fractional weights at the cut points: n = 5 -> [1.25, 3.75) -> 0.75*x1 + x2 + 0.75*x3 over 2.5
    assert iqm([0, 10, 20, 30, 40]) == pytest.approx((0.75 * 10 + 20 + 0.75 * 30) / 2.5)


def test_bootstrap_interval_contains_the_point_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = rng.normal(100, 10, 4), rng.normal(100, 10, 64)
    a, b = bootstrap(few), bootstrap(many)
    assert a.statistic == "mean" and b.statistic == "iqm"
    assert a.low <= a.point <= a.high and b.low <= b.point <= b.high
    assert (b.high - b.low) < (a.high - a.low)
    assert b.low < 100 < b.high
    assert bootstrap([3.0]).low == bootstrap([3.0]).high == 3.0
    assert bootstrap([1.0, 2.0, 3.0], seed=1) == bootstrap([1.0, 2.0, 3.0], seed=1)  # reproducible


def test_area_under_curve_is_the_mean_return_over_steps():
    assert area_under_curve([0, 10], [0, 10]) == pytest.approx(5.0)
    assert area_under_curve([0, 10, 30], [1, 1, 1]) == pytest.approx(1.0)
    assert area_under_curve([0, 10, 20], [0, 10, 10]) == pytest.approx(7.5)
