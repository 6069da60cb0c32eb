"""Accuracy intervals.

* Wilson score interval (95%) when every score is 0/1 and each question ran once: exact enough at small n and never
  leaves [0, 1], unlike the normal approximation.
* Otherwise (repeats, or fractional scores such as HealthBench's) a percentile bootstrap over *questions* (2,000
  resamples, fixed seed): repeats of one question are correlated, so questions, not executions, are resampled.
* When every question scored alike the bootstrap collapses to a point ([100, 100]); then Wilson over the number of
  questions, which keeps an honest width (30 questions all right: [88.6, 100]).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def cluster_bootstrap(groups: Sequence[Sequence[float]], *, clip: bool = False, seed: int = 0,
                      resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    if not groups:
        return (float("nan"), float("nan"))
    sums = np.array([sum(g) for g in groups], dtype=np.float64)
    counts = np.array([len(g) for g in groups], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(groups), size=(resamples, len(groups)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    if clip:
        means = np.clip(means, 0.0, 1.0)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def accuracy_interval(scores_by_question: Mapping[str, Sequence[float]], *, clip: bool = False
                      ) -> tuple[float, float, float, str]:
    """(mean, low, high, method) over all executions; ``clip`` clips the mean to [0, 1] (HealthBench)."""
    flat = [s for g in scores_by_question.values() for s in g]
    if not flat:
        return (float("nan"), float("nan"), float("nan"), "none")
    mean = sum(flat) / len(flat)
    if clip:
        mean = min(1.0, max(0.0, mean))
    binary = all(s in (0.0, 1.0) for s in flat)
    single = all(len(g) == 1 for g in scores_by_question.values())
    if binary and single:
        lo, hi = wilson(sum(flat), len(flat))
        return (mean, lo, hi, "wilson")
    lo, hi = cluster_bootstrap(list(scores_by_question.values()), clip=clip)
    if hi - lo < 1e-12:
        # every resample has the same mean (every question scored alike): a bootstrap cannot show the
        # uncertainty, so use Wilson over questions (the independent units), which never collapses to a point
        q = len(scores_by_question)
        lo, hi = wilson(min(1.0, max(0.0, mean)) * q, q)
        return (mean, lo, hi, "wilson-questions")
    return (mean, lo, hi, "bootstrap")
