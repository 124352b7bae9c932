"""Statistics across seeds for benchmark tables, as the field reports them (Agarwal et al., 2021):
the interquartile mean with a stratified bootstrap interval, the probability of improvement and
performance profiles, all from ``rliable`` (the optional ``bench`` extra). What rliable does not
cover is here too: the area under a learning curve and the time a run takes to reach a return."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from accelerl.errors import ConfigError

REPS = 2000  # bootstrap resamples: enough for two-digit intervals, quick for tables of ~10 rows


def _rliable():
    try:
        from rliable import library, metrics
    except ImportError as exc:  # the optional extra, or a broken pandas/arch pair
        raise ConfigError(f"benchmark statistics need rliable: pip install 'accelerl[bench]' ({exc})") from None
    return library, metrics


@dataclass(frozen=True)
class Estimate:
    point: float
    low: float
    high: float
    n: int  # runs (seeds) behind it

    @property
    def indicative(self) -> bool:
        """Fewer than five runs: a row that may not claim a difference."""
        return self.n < 5

    def cell(self, fmt: str = ".0f") -> str:
        return f"{self.point:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def _as_runs_by_tasks(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("scores must be [runs] or [runs, tasks] with at least one run")
    return x


def _interval_estimates(scores: dict, func, confidence: float, reps: int, seed: int):
    library, _ = _rliable()
    with warnings.catch_warnings():  # rliable passes arch a legacy RandomState, which arch deprecates
        warnings.simplefilter("ignore", FutureWarning)
        return library.get_interval_estimates(scores, func, reps=reps, confidence_interval_size=confidence,
                                              random_state=np.random.RandomState(seed))


def iqm(scores: Sequence[float] | np.ndarray, confidence: float = 0.95, reps: int = REPS, seed: int = 0) -> Estimate:
    """Interquartile mean over runs (and tasks: columns), with rliable's stratified bootstrap
    interval (runs resampled within each task)."""
    x = _as_runs_by_tasks(scores)
    _, metrics = _rliable()
    points, intervals = _interval_estimates({"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), confidence,
                                            reps, seed)
    return Estimate(float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0]), x.shape[0])


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                               confidence: float = 0.95, reps: int = REPS, seed: int = 0) -> Estimate:
    """P(X > Y): the chance that a run of X scores higher than a run of Y (ties count half),
    averaged over tasks, with a stratified bootstrap interval."""
    xs, ys = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    _, metrics = _rliable()
    points, intervals = _interval_estimates({"xy": (xs, ys)},
                                            lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
                                            confidence, reps, seed)
    return Estimate(float(points["xy"][0]), float(intervals["xy"][0, 0]), float(intervals["xy"][1, 0]),
                    min(xs.shape[0], ys.shape[0]))


def performance_profiles(scores: Mapping[str, Sequence[float] | np.ndarray], taus: np.ndarray,
                         reps: int = REPS) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """For each group, the fraction of its runs scoring above each tau, and its bootstrap band
    ([2, taus]; rliable draws these resamples unseeded)."""
    library, _ = _rliable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return library.create_performance_profile({k: _as_runs_by_tasks(v) for k, v in scores.items()}, taus,
                                                  reps=reps)


def area_under_curve(steps: Sequence[float], returns: Sequence[float]) -> float:
    """Mean return over the run (trapezoidal area divided by the step range)."""
    steps, returns = np.asarray(steps, dtype=float), np.asarray(returns, dtype=float)
    if len(steps) < 2:
        return float(returns.mean())
    area = float(np.sum((returns[1:] + returns[:-1]) * np.diff(steps)) / 2.0)
    return area / float(steps[-1] - steps[0])


def first_reach(steps: Sequence[int], wall_times: Sequence[float], values: Sequence[float],
                threshold: float) -> tuple[int, float] | None:
    """(env step, training wall time) of the first evaluation at or above ``threshold``, or None."""
    for step, wall, value in zip(steps, wall_times, values, strict=True):
        if value >= threshold:
            return int(step), float(wall)
    return None
