"""Random patches: sample i of any dataset is a pure function of (seed, i).

Each example draws from its own generator seeded by the pair (seed, i), so the values never depend on
batch size, worker count or order. Distributions come from the contract's `sample` entries, or, with
`presets`, from per-parameter distributions fitted to a CSV of preset patches (as the paper sampled
from Massive's factory presets): see `fit_presets`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmatch.bridge.core.contract import Contract, ContractError
from synthmatch.bridge.core.contract import sample_mean as distribution_mean

FIT_METHODS = ("beta", "kde")
LABEL_COLUMN = "preset"  # optional non-numeric column naming each patch
MIN_BANDWIDTH = 0.01  # kde: smallest kernel width in normalised units
FIXED_VARIANCE = 1e-8  # a column whose variance is below this is sampled as a fixed value
NOTE_STREAM = 0x6E6F7465  # "note": the played note's generator, apart from the patch's (seed, i) one
MIDI_RANGE = (0, 127)


def _draw(rng: np.random.Generator, sample: dict) -> float:
    dist = sample["dist"]
    if dist == "uniform":
        return rng.random()
    if dist == "beta":
        return rng.beta(sample["a"], sample["b"])
    if dist == "fixed":
        rng.random()  # keep the stream aligned whatever the distributions
        return float(sample["value"])
    if dist == "kde":
        # one preset value picked at random, jittered by a Gaussian kernel, reflected into [0, 1]
        points = sample["points"]
        x = points[int(rng.integers(len(points)))] + sample["bw"] * rng.standard_normal()
        x = abs(x) % 2.0
        return 2.0 - x if x > 1.0 else x
    raise ValueError(f"unknown distribution {dist!r}")


def mean_patch(contract: Contract) -> np.ndarray:
    """(16,) float32: every parameter at its sampling mean, the MSE-optimal guess that hears nothing."""
    return np.array([distribution_mean(p.sample) for p in contract.params], dtype=np.float32)


@dataclass(frozen=True)
class PresetSampling:
    """Per-parameter distributions fitted to preset patches; `samples[k]` is a contract-style sample
    dict ({"dist": "beta", "a", "b"} | {"dist": "fixed", "value"} | {"dist": "kde", "points", "bw"})."""

    source: str
    method: str
    count: int  # presets the fit saw
    samples: tuple[dict, ...]

    @property
    def fingerprint(self) -> str:
        return _digest(list(self.samples))


def _digest(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sampling_fingerprint(contract: Contract, presets: PresetSampling | None = None) -> str:
    """Identifies the sampling distributions (the contract hash leaves sampling out): 16 hex chars."""
    return presets.fingerprint if presets is not None else _digest([p.sample for p in contract.params])


def read_presets_csv(contract: Contract, path: str | Path) -> np.ndarray:
    """CSV with a header of the 16 parameter names (any order, optional "preset" label column), one
    normalised patch per row -> (N, 16) float64 in contract order. Lines starting with # are skipped."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
    except FileNotFoundError:
        raise ContractError(f"{path}: presets CSV not found") from None
    if len(rows) < 2:
        raise ContractError(f"{path}: needs a header of parameter names and at least one preset row")
    header = [h.strip() for h in rows[0]]
    unknown = sorted(set(header) - set(contract.names) - {LABEL_COLUMN})
    missing = [n for n in contract.names if n not in header]
    if unknown or missing:
        raise ContractError(
            f"{path}: header "
            + "; ".join(
                filter(
                    None,
                    [
                        f"has unknown column(s) {', '.join(unknown)}" if unknown else "",
                        f"lacks column(s) {', '.join(missing)}" if missing else "",
                    ],
                )
            )
            + f". Columns: the parameter names ({', '.join(contract.names)}) and optionally {LABEL_COLUMN!r}"
        )
    cols = [header.index(n) for n in contract.names]
    out = np.empty((len(rows) - 1, len(cols)))
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ContractError(f"{path}: line {r} has {len(row)} fields, the header has {len(header)}")
        for k, c in enumerate(cols):
            try:
                v = float(row[c])
            except ValueError:
                v = math.nan
            if not 0.0 <= v <= 1.0:
                raise ContractError(
                    f"{path}: line {r}, {contract.names[k]} = {row[c]!r}: expected a normalised number in [0, 1]"
                )
            out[r - 2, k] = v
    return out


def _fit_beta(x: np.ndarray) -> dict:
    """Method of moments: mean m, variance v -> a = m c, b = (1 - m) c with c = m (1 - m) / v - 1."""
    m, v = float(x.mean()), float(x.var())
    if v < FIXED_VARIANCE or m <= 0.0 or m >= 1.0:
        return {"dist": "fixed", "value": m}
    v = min(v, 0.99 * m * (1 - m))  # a beta's variance is below m (1 - m)
    c = m * (1 - m) / v - 1
    return {"dist": "beta", "a": m * c, "b": (1 - m) * c}


def _fit_kde(x: np.ndarray) -> dict:
    """Gaussian kernels on the presets' values. Bandwidth: half Silverman's rule (at least MIN_BANDWIDTH),
    since preset values cluster on musical steps (octaves, fifths) that the full rule would blur."""
    if float(x.var()) < FIXED_VARIANCE:
        return {"dist": "fixed", "value": float(x.mean())}
    bw = max(0.5 * 1.06 * float(x.std()) * len(x) ** -0.2, MIN_BANDWIDTH)
    return {"dist": "kde", "points": tuple(float(v) for v in np.sort(x)), "bw": bw}


def fit_presets(contract: Contract, path: str | Path, method: str = "beta") -> PresetSampling:
    """Fit one distribution per parameter to a presets CSV (see read_presets_csv).

    method "beta": a beta distribution by moments (a constant column becomes fixed);
    method "kde": a Gaussian kernel density on the preset values (keeps several modes, e.g. pitches
    at unison and octaves). Parameters are drawn independently either way.
    """
    if method not in FIT_METHODS:
        raise ValueError(f"unknown presets fit method {method!r}; use one of {', '.join(FIT_METHODS)}")
    x = read_presets_csv(contract, path)
    fit = _fit_beta if method == "beta" else _fit_kde
    return PresetSampling(str(path), method, len(x), tuple(fit(x[:, k]) for k in range(x.shape[1])))


def sample_params(
    contract: Contract, seed: int, indices: Iterable[int], presets: PresetSampling | None = None
) -> np.ndarray:
    """(len(indices), 16) float32 normalised patches; row j depends only on (seed, indices[j]) and the
    distributions (the contract's, or `presets` when given)."""
    if presets is None:
        samples = tuple(p.sample for p in contract.params)
    elif len(presets.samples) != len(contract.params):
        raise ValueError(
            f"presets {presets.source} has {len(presets.samples)} distributions, the contract {len(contract.params)}"
        )
    else:
        samples = presets.samples
    rows = []
    for i in indices:
        rng = np.random.default_rng([int(seed), int(i)])
        rows.append([_draw(rng, s) for s in samples])
    return np.asarray(rows, dtype=np.float32).reshape(-1, len(contract.params))


def check_notes(notes, where: str = "notes") -> tuple[int, int]:
    """(lo, hi) MIDI notes played, inclusive; ValueError naming `where` for anything else."""
    try:
        lo, hi = (int(n) for n in notes)
    except (TypeError, ValueError):
        raise ValueError(f"{where} = {notes!r}: give two MIDI notes [lo, hi], e.g. [36, 84]") from None
    if not MIDI_RANGE[0] <= lo <= hi <= MIDI_RANGE[1] or [lo, hi] != [n for n in notes]:
        raise ValueError(f"{where} = {list(notes)}: need whole MIDI notes 0 <= lo <= hi <= 127")
    return lo, hi


def parse_notes(text: str | None) -> tuple[int, int] | None:
    """--notes text: "36:84" -> (36, 84), "60" -> (60, 60), None -> None (the contract's note). ValueError
    with the whole message (what to give) for anything else."""
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        return check_notes((int(a), int(b if sep else a)), "--notes")
    except ValueError as e:
        raise ValueError(f"--notes {text!r}: give LO:HI MIDI notes, e.g. 36:84 ({e})") from None


def sample_notes(seed: int, indices: Iterable[int], notes: tuple[int, int]) -> np.ndarray:
    """(len(indices),) int64 MIDI notes uniform in [lo, hi]: the note example i is played at, a pure
    function of (seed, i), drawn from its own generator so the patch of example i is the same at any
    note range. lo == hi (the contract's C4 by default) plays every example at that note."""
    lo, hi = notes
    idx = [int(i) for i in indices]
    if lo == hi:
        return np.full(len(idx), lo, np.int64)
    return np.array([np.random.default_rng([int(seed), i, NOTE_STREAM]).integers(lo, hi + 1) for i in idx], np.int64)
