"""The live matcher: the network's answer -> candidates -> judged by synthesis -> the best, within a budget.

    matcher = Matcher(contract)
    result = matcher.match(window, note, network_values, budget_ms=150)   # (T,), MIDI note, (16,)
    result.values                                                          # (16,) normalised

The network regresses parameters (MSE), so where a sound leaves it unsure it predicts an average: an
oscillator pitch between two plausible ones, a filter between two. The reference synth is cheap and, while a
note is held, static, so candidates can be judged by what they sound like:

1. starts: the network's answer, the same with every oscillator in unison, the mean patch (where most
   real instruments sit: unison, moderate filters), the previous answer (continuous mode) and any extra
   candidates the caller has (the pitch head's next-best classes); the two closest seed the search;
2. a coordinate search from those seeds, judged by the fast distance (bridge/match/fast.py: the analytic
   spectrogram, ~0.5 ms a candidate on 2 cores, rank correlation ~0.97 with the full distance): every
   semitone of each pitch first (a coarser grid gets stuck an octave or a fifth away), then `coarse`
   values of the others, then finer steps around the best; it stops when the budget (less the time the
   final step needs) runs out, so a short budget still gets the most telling moves;
3. the final word: the few best distinct candidates, the network's answer and the previous one are
   rendered (bridge/match/synth.py) and judged by the full multi-scale spectral distance; the closest
   wins. So the answer is never farther from the input than the network's by that distance, and in
   continuous mode the previous answer is kept unless another is closer by `keep_margin`.

Anytime and deterministic: no random candidates; with a budget of 0 the network's answer comes back
unjudged. Imports numpy and core only (bridge/match is a rank-1 layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from synthmatch.bridge.core import contract as contract_mod
from synthmatch.bridge.core.contract import Contract, sample_mean
from synthmatch.bridge.match.distance import Target
from synthmatch.bridge.match.fast import FastTarget
from synthmatch.bridge.match.synth import Synth

# Search order: what the ear notices most first, so a budget cut short has spent its time well.
ORDER = (
    "osc1_pitch",
    "osc2_pitch",
    "osc3_pitch",
    "osc1_gain",
    "osc2_gain",
    "osc3_gain",
    "filter1_cutoff",
    "osc1_position",
    "osc2_position",
    "osc3_position",
    "filter2_cutoff",
    "filter1_resonance",
    "env_attack",
    "env_decay",
    "reverb_mix",
    "filter2_resonance",
)


EVOLVE_SEED = 20241203  # the evolution stage's random numbers: the same answer for the same input
MOVES_PER_CHILD = 2.5  # parameters an evolution child moves, on average
SIGMA_START, SIGMA_MIN, SIGMA_MAX = 0.08, 0.01, 0.3  # its step (normalised units)
# The polish stage judges real renders by the multi-scale distance at two of its four scales (about half
# its cost), where the fast distance cannot see: a real sound's noise, vibrato and transients
POLISH_N_FFTS = (512, 2048)
POLISH_STEP = 0.04  # its first step, normalised (pitches: one semitone); halved after a round without a move
POLISH_BATCH = 8  # candidates rendered at once (4 parameters, each a step down and up)


@dataclass(frozen=True)
class MatchConfig:
    budget_ms: float = 150.0  # the whole call, final renders included (see scripts/bench_match.py)
    seeds: int = 1  # closest starts searched from (1 beats 2 at 150 and 500 ms: scripts/bench_match.py)
    coarse: int = 9  # pass 0: values of a non-pitch parameter over [0, 1]
    fine: int = 2  # later passes: values each side of the current one, spacing halved each pass
    passes: int = 3  # coordinate passes (pass p > 0: finer steps around the best) before the evolution stage
    offspring: int = 32  # evolution: candidates per generation around the best so far
    generations: int = 40  # evolution: at most this many (the budget usually ends it first)
    finalists: int = 3  # best distinct search candidates rendered for the final word (+ network, previous)
    keep_margin: float = 0.05  # the previous answer is kept unless another is closer by this fraction
    polish: float = 0.35  # share of the budget kept for the polish stage (real renders around the pick),
    polish_from_ms: float = 300.0  # from this budget up (below it, a round of renders does not fit)
    min_gain: float = 0.002  # a move must cut the fast distance by this fraction (a silent oscillator's
    #                          pitch keeps its value)

    def __post_init__(self):
        if not (0 <= self.budget_ms <= 60_000 and self.seeds >= 1 and self.coarse >= 2 and self.fine >= 1):
            raise ValueError(f"MatchConfig: need 0 <= budget_ms <= 60000, seeds, fine >= 1, coarse >= 2; got {self}")
        if not (0 <= self.passes <= 10 and 1 <= self.finalists <= 16 and 0 <= self.keep_margin < 1):
            raise ValueError(f"MatchConfig: need passes 0..10, finalists 1..16, keep_margin in [0, 1); got {self}")
        if not 0 <= self.polish < 1:
            raise ValueError(f"MatchConfig: need polish in [0, 1); got {self.polish}")


@dataclass
class MatchResult:
    values: np.ndarray  # (16,) float32 normalised: the answer
    distance: float  # its full multi-scale spectral distance to the input (nan when not judged)
    network_distance: float  # the network's answer's
    source: str  # "network", "previous" or "search"
    judged: int  # candidates judged by the fast distance
    renders: int  # candidates rendered and judged by the full distance
    seconds: float  # the call's own time
    stopped_early: bool  # the budget ran out before the search's last pass
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


class Matcher:
    """One reference synth and its contract; `match` judges candidates for one window at a time. Not
    thread-safe for concurrent calls (it keeps a timing estimate); one per worker thread."""

    def __init__(self, contract: Contract | None = None, config: MatchConfig = MatchConfig()):
        self.contract = contract if contract is not None else contract_mod.default()
        self.config = config
        self.synth = Synth(self.contract)
        names = self.contract.names
        self.pitches = [names.index(n) for n in names if n.endswith("_pitch")]
        self.order = [names.index(n) for n in ORDER if n in names] + [i for i, n in enumerate(names) if n not in ORDER]
        self.mean = np.array([sample_mean(p.sample) for p in self.contract.params], np.float32)
        self.unison = {i: float(self.contract.params[i].to_normalised(0.0)) for i in self.pitches}
        self.semitones = {i: int(round(p.max - p.min)) + 1 for i, p in enumerate(self.contract.params)}
        self.pitch_step = 1.0 / (self.semitones[self.pitches[0]] - 1) if self.pitches else POLISH_STEP
        # measured on every call (running means), so the budget holds on any machine:
        self._final_s = 0.010  # seconds to render and judge one finalist
        self._candidate_s = 0.0005  # seconds to judge one candidate by the fast distance
        FastTarget(np.zeros(self.synth.num_samples, np.float32), self.synth)  # build the shared tables now

    def match(
        self,
        audio: np.ndarray,
        note: float,
        network: np.ndarray,
        *,
        previous: np.ndarray | None = None,
        extra: Sequence[np.ndarray] = (),
        budget_ms: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> MatchResult:
        """audio (T,) float32 at the contract's rate (the model's window), note: the MIDI note played,
        network (16,) the network's values; previous: the answer sent last (kept unless another is clearly
        closer); extra: more starting candidates (16,) each. budget_ms: default the config's.

        numpy's BLAS runs on one thread meanwhile: the matrix products here are small, and OpenBLAS's
        threads spin against whatever else runs (the network's inference, the audio thread): the band
        projection of one target took 36 ms with them beside a busy core, 0.7 ms without."""
        with threadpool_limits(limits=1, user_api="blas"):
            return self._match(audio, note, network, previous, extra, budget_ms, clock)

    def _match(self, audio, note, network, previous, extra, budget_ms, clock) -> MatchResult:
        t0 = clock()
        cfg = self.config
        budget = (cfg.budget_ms if budget_ms is None else budget_ms) / 1000
        network = _values(network)
        if budget <= 0:
            return MatchResult(network, float("nan"), float("nan"), "network", 0, 0, clock() - t0, False)
        deadline = t0 + budget
        full = Target(np.asarray(audio, np.float32))
        fast = FastTarget(audio, self.synth)
        held = [network] + ([_values(previous)] if previous is not None else [])  # judged in full, always
        held_d = list(self._judge(full, held, note, clock))
        timings = {"targets": clock() - t0}

        starts = np.stack(held + [self._unison(network), self.mean] + [_values(x) for x in extra])
        starts_d = fast.distance(starts, note)
        pool = _Pool(starts, starts_d)
        # the final word: as many finalists as fit in half of what is left, at least one
        n_final = int(np.clip(0.5 * (deadline - clock()) / self._final_s, 1, cfg.finalists + 2))
        polish = cfg.polish * budget if budget * 1000 >= cfg.polish_from_ms else 0.0
        until = deadline - n_final * self._final_s - polish
        stopped = self._search(fast, note, starts[np.argsort(starts_d)[: cfg.seeds]], pool, clock, until)
        if not stopped:
            stopped = self._evolve(fast, note, pool, clock, until)
        timings["search"] = clock() - t0 - timings["targets"]

        t1 = clock()
        # the search's best, the best start and the mean patch besides (where the fast distance misjudges a
        # real sound, the unison or the mean patch may still be the closer by the full one)
        finals: list[np.ndarray] = []
        for v in [starts[np.argmin(starts_d)], self.mean] + pool.best(n_final):
            if not any(np.array_equal(v, f) for f in held + finals) and len(finals) < n_final:
                finals.append(v)
        d = np.array(held_d + (list(self._judge(full, finals, note, clock)) if finals else []))
        timings["final"] = clock() - t1
        candidates = held + finals
        pick = int(np.argmin(d))
        if previous is not None and d[pick] > d[1] * (1 - cfg.keep_margin):
            pick = 1  # keep what is playing unless another is clearly closer: no chatter on a held sound
        source = {0: "network", 1: "previous" if previous is not None else "search"}.get(pick, "search")
        answer, answer_d = candidates[pick], float(d[pick])
        if polish and source != "previous" and clock() + 2 * self._final_s < deadline:
            t2 = clock()
            polished = self._polish(full.at(POLISH_N_FFTS), note, answer, clock, deadline - self._final_s)
            if polished is not None:
                polished_d = float(self._judge(full, [polished], note, clock)[0])
                if polished_d < answer_d:
                    answer, answer_d, source = polished, polished_d, "search"
            timings["polish"] = clock() - t2
        return MatchResult(
            answer,
            answer_d,
            float(d[0]),
            source,
            pool.count,
            len(candidates),
            clock() - t0,
            stopped,
            timings,
        )

    def _polish(
        self, cheap: Target, note: float, start: np.ndarray, clock: Callable[[], float], until: float
    ) -> np.ndarray | None:
        """Coordinate moves around `start` judged on real renders by `cheap` (the target at POLISH_N_FFTS),
        greedy, until the clock reaches `until` -> the closest found, or None when no move helped (or there
        was no time)."""
        best = start.copy()
        best_d = float(cheap.distance(self.synth.render(best[None], note))[0])
        step, moved_ever = POLISH_STEP, False
        per_render = self._final_s / 2  # half the full distance's scales
        while step >= POLISH_STEP / 8:
            moved = False
            for i in range(0, len(self.order), POLISH_BATCH // 2):
                t = clock()
                if t + per_render * POLISH_BATCH > until:
                    return best if moved_ever else None
                cand = []
                for k in self.order[i : i + POLISH_BATCH // 2]:
                    size = self.pitch_step if k in self.pitches else step
                    for sign in (-1, 1):
                        x = best.copy()
                        x[k] = np.clip(x[k] + sign * size, 0, 1)
                        cand.append(x)
                d = cheap.distance(self.synth.render(np.stack(cand), note))
                per_render = 0.7 * per_render + 0.3 * (clock() - t) / len(cand)
                j = int(np.argmin(d))
                if d[j] < best_d:
                    best, best_d, moved, moved_ever = cand[j], float(d[j]), True, True
            if not moved:
                step /= 2
        return best if moved_ever else None

    def _judge(self, full: Target, values: list[np.ndarray], note: float, clock: Callable[[], float]) -> np.ndarray:
        """Render and measure candidates by the full distance; keeps the cost per candidate up to date."""
        t = clock()
        d = full.distance(self.synth.render(np.stack(values), note))
        self._final_s = 0.7 * self._final_s + 0.3 * (clock() - t) / len(values)
        return d

    def warm(self) -> None:
        """One short call on a test tone: numpy's FFT plans and the caches are built before the first note
        (the first call otherwise costs ~50 ms more)."""
        t = np.arange(self.synth.num_samples) / self.synth.sample_rate
        tone = (0.3 * np.sin(2 * np.pi * 261.6 * t)).astype(np.float32)
        self.match(tone, float(self.contract.audio.note), self.mean, budget_ms=20)

    def _unison(self, v: np.ndarray) -> np.ndarray:
        out = v.copy()
        for i, u in self.unison.items():
            out[i] = u
        return out

    def _search(
        self, fast: FastTarget, note: float, seeds: np.ndarray, pool: _Pool, clock: Callable[[], float], until: float
    ) -> bool:
        """Coordinate search from seeds (S, 16), in place; every candidate judged goes to pool. A sweep
        starts only if it should end by `until` (clock time) at the measured cost per candidate. Returns
        True when the budget cut the search short."""
        cfg = self.config
        best, dist = seeds.copy(), fast.distance(seeds, note)
        for p in range(cfg.passes):
            for k in self.order:
                grid = self._grid(best[:, k], k, p)  # (S, G)
                t = clock()
                if t + self._candidate_s * grid.size > until:
                    return True
                cand = np.repeat(best, grid.shape[1], axis=0)
                cand[:, k] = grid.reshape(-1)
                scores = fast.distance(cand, note).reshape(grid.shape)
                self._candidate_s = 0.7 * self._candidate_s + 0.3 * (clock() - t) / grid.size
                pool.add(cand, scores.reshape(-1))
                j = scores.argmin(1)
                rows = np.arange(len(best))
                better = scores[rows, j] < dist * (1 - cfg.min_gain)
                best[better, k] = grid[rows, j][better]
                dist[better] = scores[rows, j][better]
        return False

    def _evolve(self, fast: FastTarget, note: float, pool: _Pool, clock: Callable[[], float], until: float) -> bool:
        """A (1 + offspring) evolution strategy from the best candidate so far: each child moves a few
        parameters by a Gaussian step (pitches to whole semitones), the best child replaces the parent when
        closer; the step grows after a success and shrinks after a failure. Moves several parameters at
        once, where the coordinate search stalls (a gain against a cutoff, two oscillators' pitches).
        Deterministic: its random numbers come from a fixed seed."""
        cfg = self.config
        rng = np.random.default_rng(EVOLVE_SEED)
        parent, parent_d = pool.best_one()
        sigma = SIGMA_START
        pitches = np.array(self.pitches)
        steps = np.array([self.semitones[k] - 1 for k in self.pitches], np.float32)  # semitones per unit
        for _ in range(cfg.generations):
            t = clock()
            if t + self._candidate_s * cfg.offspring > until:
                return True
            move = rng.random((cfg.offspring, parent.size)) < MOVES_PER_CHILD / parent.size
            move[np.arange(cfg.offspring), rng.integers(parent.size, size=cfg.offspring)] = True  # >= 1 each
            cand = np.clip(parent + move * rng.standard_normal(move.shape).astype(np.float32) * sigma, 0, 1)
            cand[:, pitches] = np.where(move[:, pitches], np.round(cand[:, pitches] * steps) / steps, parent[pitches])
            d = fast.distance(cand, note)
            self._candidate_s = 0.7 * self._candidate_s + 0.3 * (clock() - t) / len(cand)
            pool.add(cand, d)
            j = int(np.argmin(d))
            if d[j] < parent_d * (1 - cfg.min_gain):
                parent, parent_d, sigma = cand[j], d[j], min(SIGMA_MAX, sigma * 1.5)
            else:
                sigma = max(SIGMA_MIN, sigma * 0.8)
        return False

    def _grid(self, current: np.ndarray, k: int, p: int) -> np.ndarray:
        """Values to try for parameter k in pass p, per seed: (S, G) float32."""
        cfg = self.config
        size = self.semitones[k] if k in self.pitches else cfg.coarse
        if p == 0:
            return np.broadcast_to(np.linspace(0, 1, size, dtype=np.float32), (len(current), size)).copy()
        step = 1.0 / (size - 1) / 2**p
        offsets = np.concatenate([-np.arange(cfg.fine, 0, -1), np.arange(1, cfg.fine + 1)]) * step
        return np.clip(current[:, None] + offsets[None].astype(np.float32), 0, 1)


class _Pool:
    """Every candidate judged so far with its fast distance; hands out the best distinct ones."""

    def __init__(self, values: np.ndarray, dist: np.ndarray):
        self.values, self.dist = [values], [dist]
        self.count = len(values)

    def add(self, values: np.ndarray, dist: np.ndarray) -> None:
        self.values.append(values)
        self.dist.append(dist)
        self.count += len(values)

    def best_one(self) -> tuple[np.ndarray, float]:
        dist = [d.min() for d in self.dist]
        i = int(np.argmin(dist))
        j = int(np.argmin(self.dist[i]))
        return self.values[i][j].copy(), float(self.dist[i][j])

    def best(self, n: int) -> list[np.ndarray]:
        values, dist = np.concatenate(self.values), np.concatenate(self.dist)
        out: list[np.ndarray] = []
        for i in np.argsort(dist, kind="stable"):
            if not any(np.array_equal(values[i], v) for v in out):
                out.append(values[i])
            if len(out) == n:
                break
        return out


def _values(v) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(v, np.float32).reshape(-1), nan=0.5), 0, 1)
