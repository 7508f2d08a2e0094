"""Percentile-bootstrap resampling of per-clip values, shared by scores and the promotion gate.

One implementation, so the accuracy intervals in ``reports/metrics.json`` and the paired
difference the gate reads resample clips the same way: with replacement, from a generator
seeded by the caller, in blocks that bound memory for large test sets. numpy only, so the
pure decision module can use it without pulling in anything heavy.
"""

from __future__ import annotations

import numpy as np

# Upper bound on the (resamples x clips) index block drawn at once, to bound memory.
MAX_BLOCK = 4_000_000


def resampled_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Means of ``samples`` resamples (with replacement) of the 1-d ``values``."""
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if n == 0:
        raise ValueError("bootstrap: no clips to resample (empty input)")
    if samples < 1:
        raise ValueError(f"bootstrap: samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    block = max(1, MAX_BLOCK // n)
    means = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, block):
        stop = min(samples, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means
