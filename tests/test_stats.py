"""Aggregation across seeds on known inputs (rliable through accelerl.stats, and what it lacks)."""

from __future__ import annotations

import numpy as np
import pytest

from accelerl.stats import (
    area_under_curve,
    first_reach,
    improvement,
    interquartile_mean,
    iqm,
    performance_profiles,
    probability_of_improvement,
)

pytest.importorskip("rliable", reason="benchmark statistics need the bench extra (rliable)")


def test_iqm_of_known_inputs():
    assert iqm(np.arange(8)).point == pytest.approx(3.5)  # middle four: 2, 3, 4, 5
    assert iqm([1, 2, 3, 4, 100]).point == pytest.approx(3.0)  # the outlier is trimmed
    assert iqm([5.0]).point == 5.0
    # several tasks (columns): the IQM of all runs of all tasks together
    assert iqm(np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])).point == pytest.approx(
        np.mean([3.0, 4.0, 10.0, 20.0]))


def test_the_interval_contains_the_point_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few, many = iqm(rng.normal(100, 10, 5)), iqm(rng.normal(100, 10, 64))
    assert few.low <= few.point <= few.high and many.low <= many.point <= many.high
    assert (many.high - many.low) < (few.high - few.low) and many.low < 100 < many.high
    assert few.n == 5 and not few.indicative and iqm([1.0, 2.0]).indicative


def test_an_interval_is_fixed_by_its_seed_and_leaves_numpys_global_rng_alone():
    """rliable draws resamples from NumPy's global RNG and ignores the random_state it is given."""
    scores, other = [1.0, 2.0, 3.0, 4.0, 9.0], [0.0, 2.0, 2.0, 5.0, 1.0]
    intervals = {iqm(scores, reps=300, seed=1) for _ in range(3)}
    assert len(intervals) == 1 and iqm(scores, reps=300, seed=2) not in intervals
    assert len({probability_of_improvement(scores, other, reps=300, seed=1) for _ in range(3)}) == 1
    many = np.random.default_rng(0).normal(size=10)
    taus = np.array([-0.5, 0.0, 0.5])
    band = performance_profiles({"a": many}, taus, reps=300, seed=1)[1]["a"]
    np.testing.assert_array_equal(performance_profiles({"a": many}, taus, reps=300, seed=1)[1]["a"], band)
    # a group's band does not depend on the groups drawn before it
    np.testing.assert_array_equal(performance_profiles({"b": many[::-1], "a": many}, taus, reps=300, seed=1)[1]["a"],
                                  band)
    for call in (lambda: iqm(scores, reps=50, seed=7), lambda: probability_of_improvement(scores, other, reps=50),
                 lambda: performance_profiles({"a": scores}, taus, reps=20)):
        np.random.seed(123)
        expected = np.random.rand()
        np.random.seed(123)
        call()
        assert np.random.rand() == expected


def test_the_interquartile_mean_trims_as_rliable_does():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for shape in ((1, 1), (3, 1), (4, 1), (5, 2), (7, 3), (10, 1)):
        scores = rng.integers(0, 6, shape).astype(float) + rng.normal(size=shape) * (shape[0] % 2)
        assert interquartile_mean(scores) == pytest.approx(metrics.aggregate_iqm(scores), rel=1e-12)


def test_the_probability_of_improvement_counts_run_pairs_as_rliable_does():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for runs_x, runs_y, tasks in ((5, 5, 1), (3, 7, 2), (6, 4, 3)):
        x = rng.integers(0, 4, (runs_x, tasks)).astype(float)  # small integers: many ties
        y = rng.integers(0, 4, (runs_y, tasks)).astype(float)
        assert improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y), abs=1e-12)
    same = rng.normal(size=(4, 2))
    assert improvement(same, same) == metrics.probability_of_improvement(same, same) == 0.5
    # to the last bit (a table cell at .xx5 rounds the same way): 2 runs against 10, 1.5 wins of 20
    two, ten = np.array([[0.5], [0.0]]), np.arange(10.0)[:, None]  # 0.5 beats 0, 0 ties 0: 0.075
    assert improvement(two, ten) == metrics.probability_of_improvement(two, ten)
    # a run that diverged (NaN) makes the estimate NaN, as scipy's test does, never a plausible number
    assert np.isnan(improvement(np.array([[1.0], [np.nan]]), np.array([[0.0], [2.0]])))
    with pytest.raises(ValueError, match="same tasks"):
        improvement(np.zeros((3, 2)), np.zeros((3, 1)))


def test_probability_of_improvement_of_known_inputs():
    assert probability_of_improvement([5, 6, 7, 8, 9], [0, 1, 2, 3, 4]).point == 1.0
    assert probability_of_improvement([0, 1, 2], [5, 6, 7]).point == 0.0
    assert probability_of_improvement([1, 2, 3], [1, 2, 3]).point == pytest.approx(0.5)  # ties count half
    # 5..9 against 1..5: of 25 pairs, one tie (5, 5) and 24 wins -> 24.5 / 25
    p = probability_of_improvement([5, 6, 7, 8, 9], [1, 2, 3, 4, 5])
    assert p.point == pytest.approx(0.98) and p.low <= 0.98 <= p.high <= 1.0


def test_performance_profile_is_the_fraction_of_runs_above_each_tau():
    profiles, bands = performance_profiles({"a": [1, 2, 3, 4, 5]}, np.array([0.0, 2.5, 10.0]), reps=200)
    np.testing.assert_allclose(profiles["a"], [1.0, 0.6, 0.0])
    assert bands["a"].shape == (2, 3)


def test_area_under_curve_is_the_mean_return_over_steps():
    assert area_under_curve([0, 10], [0, 10]) == pytest.approx(5.0)
    assert area_under_curve([0, 10, 30], [1, 1, 1]) == pytest.approx(1.0)
    assert area_under_curve([0, 10, 20], [0, 10, 10]) == pytest.approx(7.5)


def test_first_reach_is_the_first_evaluation_at_or_above_the_threshold():
    steps, wall, values = [0, 100, 200, 300], [0.0, 5.0, 9.0, 14.0], [0.0, 4.9, 5.0, 7.0]
    assert first_reach(steps, wall, values, 5.0) == (200, 9.0)
    assert first_reach(steps, wall, values, 7.5) is None
