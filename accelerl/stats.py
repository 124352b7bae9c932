"""Aggregates across seeds for benchmark tables: mean with a bootstrap interval, and the
interquartile mean (IQM) recommended by Agarwal et al. (2021) once there are >= 5 runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iqm(values: np.ndarray) -> float:
    """Mean of the middle 50% of values (25% trimmed from each end, fractional weights at the
    cut points, so it is well defined for any n)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        raise ValueError("iqm of no values")
    lo, hi = 0.25 * n, 0.75 * n
    # Weight of sample i = overlap of [i, i+1) with [lo, hi).
    idx = np.arange(n)
    weights = np.clip(np.minimum(idx + 1, hi) - np.maximum(idx, lo), 0.0, 1.0)
    return float((weights * x).sum() / weights.sum())


@dataclass(frozen=True)
class Estimate:
    point: float
    low: float
    high: float
    n: int
    statistic: str  # "mean" or "iqm"


def bootstrap(values: np.ndarray, statistic: str = "auto", confidence: float = 0.95, resamples: int = 2000,
              seed: int = 0) -> Estimate:
    """Point estimate and percentile-bootstrap interval over runs. ``auto`` uses the IQM with
    five or more runs and the mean below that."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("bootstrap of no values")
    if statistic == "auto":
        statistic = "iqm" if len(x) >= 5 else "mean"
    fn = iqm if statistic == "iqm" else (lambda v: float(np.mean(v)))
    point = fn(x)
    if len(x) == 1:
        return Estimate(point, point, point, 1, statistic)
    rng = np.random.default_rng(seed)
    samples = x[rng.integers(0, len(x), size=(resamples, len(x)))]
    stats = np.array([fn(s) for s in samples])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return Estimate(point, float(low), float(high), len(x), statistic)


def area_under_curve(steps: np.ndarray, returns: np.ndarray) -> float:
    """Mean return over the run (trapezoidal area divided by the step range)."""
    steps, returns = np.asarray(steps, dtype=float), np.asarray(returns, dtype=float)
    if len(steps) < 2:
        return float(returns.mean())
    area = float(np.sum((returns[1:] + returns[:-1]) * np.diff(steps)) / 2.0)
    return area / float(steps[-1] - steps[0])
