"""Random patches: sample i of any dataset is a pure function of (seed, i).

Each example draws from its own generator seeded by the pair (seed, i), so the values never depend on
batch size, worker count or order. Distributions come from the contract's `sample` entries.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bridge.contract import Contract


def _draw(rng: np.random.Generator, sample: dict) -> float:
    dist = sample["dist"]
    if dist == "uniform":
        return rng.random()
    if dist == "beta":
        return rng.beta(sample["a"], sample["b"])
    if dist == "fixed":
        rng.random()  # keep the stream aligned whatever the distributions
        return float(sample["value"])
    raise ValueError(f"unknown distribution {dist!r}")


def sample_params(contract: Contract, seed: int, indices: Iterable[int]) -> np.ndarray:
    """(len(indices), 16) float32 normalised patches; row j depends only on (seed, indices[j])."""
    rows = []
    for i in indices:
        rng = np.random.default_rng([int(seed), int(i)])
        rows.append([_draw(rng, p.sample) for p in contract.params])
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(contract.params))
