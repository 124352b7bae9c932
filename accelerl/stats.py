"""Statistics across seeds for benchmark tables, as the field reports them (Agarwal et al., 2021):
the interquartile mean with a stratified bootstrap interval, the probability of improvement and
performance profiles, with ``rliable``'s bootstrap (the optional ``bench`` extra). Two of its
metrics are computed here with numpy, equal to rliable's and many times faster, and every
interval is fixed by its seed. What rliable does not cover is here too: the area under a
learning curve and the time a run takes to reach a return."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from accelerl.errors import ConfigError

REPS = 2000  # bootstrap resamples: enough for two-digit intervals, quick for tables of ~10 rows


def _rliable():
    try:
        from rliable import library
    except ImportError as exc:  # the optional extra, or a broken pandas/arch pair
        raise ConfigError(f"benchmark statistics need rliable: pip install 'accelerl[bench]' ({exc})") from None
    return library


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


@contextlib.contextmanager
def _seeded_draws(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws, fixed by ``seed``: NumPy's global RNG seeded, and put back as it
    was afterwards. rliable 1.2 draws its resamples with ``np.random.choice`` and never reads the
    ``random_state`` it is handed, so without this an interval changed from one call to the next
    (and a table of them from one run of a benchmark to the next). Also quiets arch's FutureWarning
    about the legacy RandomState rliable passes it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        np.random.set_state(saved)


def _interval_estimates(scores: dict, func, confidence: float, reps: int, seed: int):
    library = _rliable()
    with _seeded_draws(seed):
        return library.get_interval_estimates(scores, func, reps=reps, confidence_interval_size=confidence,
                                              random_state=np.random.RandomState(seed))


def interquartile_mean(scores: np.ndarray) -> float:
    """rliable's ``metrics.aggregate_iqm``: scipy's 25% trimmed mean of all scores (runs and tasks
    together), int(n / 4) cut from each end. Computed here: scipy's argument handling around
    ``trim_mean`` took 85% of the time of a bootstrap interval."""
    flat = np.sort(np.ravel(scores))
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def iqm(scores: Sequence[float] | np.ndarray, confidence: float = 0.95, reps: int = REPS, seed: int = 0) -> Estimate:
    """Interquartile mean over runs (and tasks: columns), with rliable's stratified bootstrap
    interval (runs resampled within each task)."""
    x = _as_runs_by_tasks(scores)
    points, intervals = _interval_estimates({"x": x}, lambda s: np.array([interquartile_mean(s)]), confidence,
                                            reps, seed)
    return Estimate(float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0]), x.shape[0])


def improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's ``metrics.probability_of_improvement`` of [runs, tasks] arrays: for each task the
    Mann-Whitney U statistic over all pairs of runs, (wins + ties / 2) / pairs, then the mean over
    tasks. Counted with numpy: rliable runs one scipy test per task and bootstrap resample, 94% of
    the time of an interval (about 5 s for 2000 resamples on a 2-core CPU)."""
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"scores of {x.shape[1]} and {y.shape[1]} tasks: compare the same tasks")
    pairs = x[:, None, :], y[None, :, :]
    u = np.greater(*pairs).sum(axis=(0, 1)) + 0.5 * np.equal(*pairs).sum(axis=(0, 1))
    per_task = u / (x.shape[0] * y.shape[0])  # one division, as rliable's U / pairs: the same last bit
    nan = np.isnan(x).any(axis=0) | np.isnan(y).any(axis=0)  # scipy propagates NaN: a diverged run shows
    return float(np.where(nan, np.nan, per_task).mean())


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                               confidence: float = 0.95, reps: int = REPS, seed: int = 0) -> Estimate:
    """P(X > Y): the chance that a run of X scores higher than a run of Y (ties count half),
    averaged over tasks, with a stratified bootstrap interval."""
    xs, ys = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    points, intervals = _interval_estimates({"xy": (xs, ys)}, lambda a, b: np.array([improvement(a, b)]),
                                            confidence, reps, seed)
    return Estimate(float(points["xy"][0]), float(intervals["xy"][0, 0]), float(intervals["xy"][1, 0]),
                    min(xs.shape[0], ys.shape[0]))


def performance_profiles(scores: Mapping[str, Sequence[float] | np.ndarray], taus: np.ndarray,
                         reps: int = REPS, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """For each group, the fraction of its runs scoring above each tau, and its bootstrap band
    ([2, taus])."""
    library = _rliable()
    profiles, bands = {}, {}
    for name, group in scores.items():  # each group's resamples from the seed alone, whatever groups come first
        with _seeded_draws(seed):
            profile, band = library.create_performance_profile({name: _as_runs_by_tasks(group)}, taus, reps=reps)
        profiles[name], bands[name] = profile[name], band[name]
    return profiles, bands


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
