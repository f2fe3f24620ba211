"""Bootstrap intervals: how much a statistic over a few hundred renders could move by chance.

The renders are resampled with replacement ``resamples`` times (a seeded generator, so the
interval is reproducible), the statistic is recomputed on each resample, and the interval is the
percentile range holding ``level`` of the results (the percentile bootstrap). Resamples where
the statistic is undefined (e.g. a correlation of a constant) are dropped; when more than half
are, there is no interval.

Letters: n paired values, B resamples.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of ``a [n]`` and ``b [n]``; None with fewer than 3 values or a constant side."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[B, n]`` x ``[B, n]`` -> ``[B]`` correlations, NaN where a row is constant (as ``pearson``)."""
    da, db = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    sa, sb = a.std(axis=1), b.std(axis=1)
    r = (da * db).mean(axis=1) / np.maximum(sa * sb, 1e-300)
    return np.where((sa < 1e-6) | (sb < 1e-6), np.nan, r)


def bootstrap_correlation(
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval ``(low, high)`` of the Pearson correlation of pairs ``(a[i], b[i])``.

    Args:
        a, b: ``[n]`` paired values (e.g. requested and read scores of n renders).
        resamples: B; 0 gives None.
        level: the interval's coverage (0.95: the 2.5th to 97.5th percentile).
        seed: seeds the resampling.

    Returns:
        The interval, or None when it is undefined (see the module docstring).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if resamples <= 0 or len(a) < 3 or pearson(a, b) is None:
        return None
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    values = _rowwise_pearson(a[idx], b[idx])
    good = values[np.isfinite(values)]
    if len(good) * 2 < resamples:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(good, [tail, 100.0 - tail])
    return float(low), float(high)
