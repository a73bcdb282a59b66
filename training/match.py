"""`synthmatch match INPUT`: match one sound file offline and write what was found.

INPUT (wav, flac, ogg...; any rate; stereo mixed down) -> onset -> the 4 s window that starts there, as
the training sounds do (shorter files zero-padded) -> model -> the matcher the live daemon uses
(bridge/match/search.py: candidates judged by synthesis within --budget ms; 0 turns it off), or with
--refine-passes N the older coordinate search over full renders (training.refine: slower, and the only
search through a plugin) -> in --out-dir:
  params.json   normalised and physical values, Massive names, MIDI CCs, model and contract
  match.wav     the synth playing the prediction (16 kHz mono float): the reference synth, or a VST3
                instrument with --synth vst3:PATH --profile P (training.synths; the model must have been
                trained on that synth and profile, or it is refused)
  compare.png   input vs match log-mel spectrograms and the 16 parameters as bars
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np

from synthmatch.bridge.audio.onset import OnsetSettings, offline_onsets, rms_dbfs
from synthmatch.bridge.core.contract import Contract
from synthmatch.bridge.core.errors import UsageError

DEFAULT_MODEL = Path(str(resources.files("synthmatch.models"))) / "default.onnx"  # package data
SILENCE_DBFS = -70.0  # a whole file below this peak level is treated as silent
SHORT_S = 0.25  # inputs shorter than this get a warning: the model listens to 4 s from the onset
# the matcher's time per file: closer than the old 3-pass search's 8-13 s (scripts/bench_match.py)
MATCH_BUDGET_MS = 500.0
DC_OFFSET = 0.05  # |mean| above this (full scale 1.0) gets a warning
PLUGIN_REFINE_PASSES = 1  # default through a plugin, which renders one patch at a time: 206 renders for
#                           the test instrument's 7 mapped parameters (~1 s), 528 for all 16 (x render time)
CLIPPED_FRACTION = 0.001  # more than this share of samples at full scale gets a warning


def aligned_window(
    audio: np.ndarray, contract: Contract, settings: OnsetSettings | None = None, where: str = "input"
) -> tuple[np.ndarray, int]:
    """(T,) mono at the contract rate -> ((num_samples,) window starting at the first onset, onset).

    Raises UsageError for empty or silent audio."""
    n = contract.audio.num_samples
    if audio.size == 0:
        raise UsageError(f"{where}: no audio samples; give a file with sound in it")
    peak = float(np.max(np.abs(audio)))
    if peak == 0 or 20 * np.log10(peak) < SILENCE_DBFS:
        raise UsageError(
            f"{where}: silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); record louder or check the file"
        )
    settings = settings or OnsetSettings()
    # a quiet recording still has a start: lower the threshold to 30 dB under its own peak if needed
    if 20 * np.log10(peak) - 30 < settings.threshold_db:
        level = 20 * np.log10(peak) - 30
        settings = OnsetSettings(
            **{**settings.__dict__, "threshold_db": level, "floor_db": min(settings.floor_db, level - 20)}
        )
    onsets = offline_onsets(audio, settings, contract.audio.sample_rate)
    start = onsets[0] if onsets else int(np.argmax(np.abs(audio) > 0))
    window = np.zeros(n, dtype=np.float32)
    chunk = audio[start : start + n]
    window[: chunk.size] = chunk
    return window, start


def predict(
    model: str | Path,
    audio: np.ndarray,
    contract: Contract,
    backend: str = "onnxruntime",
    notes=None,
    extras: dict | None = None,
) -> np.ndarray:
    """(B, num_samples) [, (B,) MIDI notes played] -> (B, 16) normalised values from an exported model, in
    [0, 1]. notes reach a model told the note (bridge.engine.Engine.infer); a C4-only model ignores them.

    Outputs that are not finite or lie outside [0, 1] (beyond the engine's rounding tolerance) raise
    UsageError: a model that gives them is broken, and its numbers must not reach params.json. extras: a
    dict to receive the model's extra outputs ({name: (B, rows, k)}; Engine.infer_full), if it has any."""
    from synthmatch.bridge.engines import load_engine, output_problem

    engine = load_engine(model, backend=backend, contract=contract)
    try:
        out, got = engine.infer_full(np.ascontiguousarray(audio, dtype=np.float32), notes)
    except UsageError:
        raise
    except Exception as e:  # ONNX Runtime or a GPU failing on this input: one line, not a traceback
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise UsageError(
            f"{model}: inference failed on this input ({type(e).__name__}: {first}); the model file may be "
            "broken: re-export it with `synthmatch export`, or try another --backend"
        ) from None
    finally:
        engine.close()
    why = output_problem(out)
    if why is not None:
        raise UsageError(
            f"{model}: for this input {why}; the model file is broken: re-export it with "
            "`synthmatch export` or pass another --model"
        )
    if extras is not None:
        extras.update(got)
    return np.clip(out, 0.0, 1.0)


def predict_at_note(
    model: str | Path,
    window: np.ndarray,
    note: int,
    contract: Contract,
    backend: str = "onnxruntime",
    mode: str = "pitch",
    extras: dict | None = None,
) -> np.ndarray:
    """(num_samples,) window played at MIDI `note` -> (16,) values for it. A model told the note hears
    it as the window's note; a C4-only model, as bridge.notenorm says (mode "pitch": the oscillator pitches
    from the window resampled to C4, the rest from the raw window, as the daemon does). extras: a dict to
    receive the model's extra outputs for the window ({name: (rows, k)}) where they describe it (as
    bridge.audio.notes.NoteStage.infer_full)."""
    from synthmatch.bridge.audio import notenorm
    from synthmatch.bridge.core.modelfile import read_meta

    if mode == "off" or note == contract.audio.note or read_meta(model).takes_note:
        got: dict = {}
        values = predict(model, window[None], contract, backend=backend, notes=[note], extras=got)[0]
        if extras is not None:
            extras.update({name: x[0] for name, x in got.items()})
        return values
    x, s = notenorm.to_reference(window, note, contract)
    raw, norm = predict(model, np.stack([window.astype(np.float32), x]), contract, backend=backend)
    return notenorm.combine(raw, notenorm.from_reference(norm, s, contract)[0], contract, mode)


def input_warnings(audio: np.ndarray, report: dict, sample_rate: int) -> list[str]:
    """What about an input (mono at sample_rate, NaN already zeroed; report from audiofile.read_mono)
    may spoil the match: NaN samples, DC offset, clipping, a very short file."""
    out = []
    if report.get("nonfinite"):
        out.append(f"{report['nonfinite']} samples are NaN or infinite (replaced by silence)")
    if report.get("clipped", 0) > CLIPPED_FRACTION * max(1, report.get("frames", audio.size)):
        out.append(
            f"{report['clipped']} samples at full scale: the recording is clipped, so the match hears "
            "distortion; record it quieter"
        )
    if audio.size and abs(float(np.mean(audio))) > DC_OFFSET:
        out.append(
            f"DC offset {float(np.mean(audio)):+.3f} (full scale 1); high-pass the file (e.g. sox ... "
            "highpass 10) for a better match"
        )
    duration = audio.size / sample_rate
    if duration < SHORT_S:
        out.append(
            f"only {duration * 1000:.0f} ms of audio; the model listens to 4 s from the note's start, "
            "so give the whole note"
        )
    return out


def describe(values, contract: Contract) -> list[dict]:
    return [
        {
            "name": p.name,
            "massive": p.massive,
            "cc": p.cc,
            "normalised": round(float(v), 4),
            "physical": round(float(p.to_physical(float(v))), 4),
            "unit": p.unit,
        }
        for p, v in zip(contract.params, values)
    ]


def plot_compare(
    path: Path | BinaryIO,
    target: np.ndarray,
    match: np.ndarray,
    values,
    contract: Contract,
    title: str,
    synth_name: str = "reference synth",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthmatch.bridge.core.frontend import log_mel

    mels = log_mel(np.stack([target, match]), contract)
    fig = plt.figure(figsize=(11, 7), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1])
    extent = [0, contract.audio.duration_s, 0, contract.frontend.n_mels]
    for col, (mel, name) in enumerate(zip(mels, ["input (aligned 4 s)", f"match ({synth_name})"])):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(mel, origin="lower", aspect="auto", extent=extent, vmin=mels.min(), vmax=mels.max(), cmap="magma")
        ax.set(title=name, xlabel="time (s)", ylabel="mel band")
    ax = fig.add_subplot(grid[1, :])
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), contract.names, rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel="normalised value", title=title)
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)


@dataclass
class MatchResult:
    """What match_file found for one sound."""

    values: dict[str, float]  # normalised [0, 1] per contract parameter name (what the synth is sent)
    note: dict  # the note heard: midi, f0_hz, confidence, heard (False: fallback used)
    onset_s: float  # where the matched 4 s window starts in the file
    rendered: np.ndarray  # (num_samples,) float32: the synth playing `values` at the heard note
    window: np.ndarray  # (num_samples,) float32: the input window the model heard
    report: dict  # params.json: the above plus physical values, model, synth, refinement


def model_path(model: str | Path | None) -> Path:
    """The model file to use (default: the shipped one); UsageError if it does not exist."""
    path = Path(model) if model else DEFAULT_MODEL
    if not path.exists():
        raise UsageError(
            f"{path}: no model file; train and export one (synthmatch train / export) or pass --model PATH"
        )
    return path


def match_file(
    path: str | Path,
    model: str | Path | None = None,
    *,
    refine_passes: int | None = None,
    budget_ms: float | None = None,
    synth: str = "reference",
    profile: str | None = None,
    backend: str = "onnxruntime",
    channel: int | None = None,
    contract: Contract | None = None,
    warn=None,
) -> MatchResult:
    """Match one sound file: onset -> the 4 s window from it -> the note heard -> model -> refinement.

    model: an exported .onnx (default: the shipped one); budget_ms: the matcher's time on the reference
    synth (default MATCH_BUDGET_MS; 0: the network alone); refine_passes: the older coordinate search over
    full renders instead, N passes (through a plugin it is the only search: default PLUGIN_REFINE_PASSES;
    0: the network alone); synth/profile:
    "reference" or "vst3:PATH" with its profile; warn(text) hears what may spoil the match (default:
    stderr). Raises UsageError (one line, what to do) for bad files, models and synths."""
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.training.synths import REFERENCE

    c = contract or contract_mod.default()
    warn = warn or (lambda text: print(f"synthmatch match: warning: {path}: {text}", file=sys.stderr))
    model = model_path(model)
    window, onset = _read_window(path, c, channel, warn)
    player = _open_player(synth, profile, c, model)  # a plugin that is missing or wrong fails here
    heard, predicted, extras = _predict(model, window, c, backend, player, warn)
    values, refinement = predicted, None
    passes = refine_passes if refine_passes is not None else (None if synth == REFERENCE else PLUGIN_REFINE_PASSES)
    if passes:
        values, refinement = _coordinate_search(c, window, predicted, passes, synth, player)
    elif passes is None and (budget_ms is None or budget_ms > 0):
        budget = budget_ms or MATCH_BUDGET_MS
        values, refinement = _matcher(c, window, heard.note, predicted, extras, model, budget)
    return _result(path, model, c, player, window, onset, heard, values, refinement)


def _read_window(path: str | Path, c: Contract, channel: int | None, warn) -> tuple[np.ndarray, int]:
    """The input file -> (the (num_samples,) window from its onset, onset in samples); warn(text) hears
    what may spoil the match. UsageError for a file that cannot be read or holds no sound."""
    from synthmatch.bridge.core import audiofile

    try:
        found: dict = {}
        audio = audiofile.read_mono(path, c.audio.sample_rate, channel=channel, report=found)
    except audiofile.AudioFileError as e:
        raise UsageError(str(e)) from None
    audio = np.clip(audio, -1.0, 1.0)  # as the bridge's input does: samples beyond full scale (1e30...) clip
    for w in input_warnings(audio, found, c.audio.sample_rate):
        warn(w)
    return aligned_window(audio, c, where=str(path))


def _open_player(synth: str, profile: str | None, c: Contract, model: Path):
    """The synth that plays the match (reference or a plugin with its profile); UsageError when it is
    missing or is not the synth the model was trained on."""
    from synthmatch.bridge.core.modelfile import read_meta
    from synthmatch.training.synths import check_identity, open_synth

    player = open_synth(synth, c, profile)
    check_identity(
        read_meta(model).synth,
        player.identity,
        str(model),
        "match with the synth and profile it was trained on (--synth/--profile), or train a model "
        "on this synth's data (docs/massive-guide.md)",
    )
    return player


def _predict(model: Path, window: np.ndarray, c: Contract, backend: str, player, warn):
    """(the note heard, the model's (P,) normalised prediction at it, the pitch head's extras). The
    player is set to play the heard note; parameters its profile does not map are pinned to its means."""
    from synthmatch.bridge.audio.pitch import detect

    heard = detect(window, c.audio.sample_rate)  # the note played: the model is told it, match.wav plays it
    if not heard.voiced:
        warn(f"no clear note ({heard.reason}); matched at the fallback note {heard.note}")
    extras: dict = {}  # the pitch head's top classes: more starts for the matcher
    predicted = predict_at_note(model, window, heard.note, c, backend=backend, extras=extras)
    if hasattr(player, "note"):  # the reference synth plays the heard note (a plugin plays its profile's)
        player.note = heard.note
    pinned = [i for i, name in enumerate(c.names) if name not in player.mapped]
    predicted[pinned] = player.mean_patch()[pinned]  # what a plugin's profile pins them to (none: reference)
    return heard, predicted, extras


def _coordinate_search(c: Contract, window: np.ndarray, predicted: np.ndarray, passes: int, synth: str, player):
    """The older refinement: `passes` of coordinate search over full renders -> (values, report)."""
    import time

    from synthmatch.training.refine import RefineConfig, refine
    from synthmatch.training.synths import REFERENCE

    cfg = RefineConfig(passes=passes, only=() if synth == REFERENCE else player.mapped)
    t0 = time.perf_counter()
    refined, before, after = refine(c, window[None], predicted[None], cfg, synth=player)
    return refined[0], {
        "method": "coordinate search",
        "passes": cfg.passes,
        "renders": cfg.renders_per_sound(c),
        "seconds": round(time.perf_counter() - t0, 2),
        "distance_model": round(float(before[0]), 4),
        "distance_refined": round(float(after[0]), 4),
        "model_values": {p.name: round(float(v), 4) for p, v in zip(c.params, predicted)},
    }


def _matcher(
    c: Contract, window: np.ndarray, note: int, predicted: np.ndarray, extras: dict, model: Path, budget_ms: float
):
    """The live daemon's matcher on the reference synth within budget_ms -> (values, report)."""
    from synthmatch.bridge.core.modelfile import read_meta
    from synthmatch.bridge.match.candidates import pitch_candidates
    from synthmatch.bridge.match.search import Matcher

    starts = pitch_candidates(predicted, extras, read_meta(model))
    r = Matcher(c).match(window, float(note), predicted, extra=starts, budget_ms=budget_ms)
    return r.values, {
        "method": "matcher",
        "budget_ms": budget_ms,
        "judged": r.judged,
        "renders": r.renders,
        "seconds": round(r.seconds, 3),
        "distance_model": round(r.network_distance, 4),
        "distance_refined": round(r.distance, 4),
        "model_values": {p.name: round(float(v), 4) for p, v in zip(c.params, predicted)},
    }


def _result(path, model: Path, c: Contract, player, window, onset: int, heard, values, refinement) -> MatchResult:
    """The match rendered by the player, and params.json's report."""
    rendered = player.render(values[None].copy())[0]
    note = {
        "midi": heard.note,
        "f0_hz": None if heard.f0_hz is None else round(heard.f0_hz, 2),
        "confidence": round(heard.confidence, 3),
        "heard": heard.voiced,
        "fallback_reason": heard.reason,
    }
    named = {p.name: round(float(v), 4) for p, v in zip(c.params, values)}
    report = {
        "input": str(path),
        "onset_s": round(onset / c.audio.sample_rate, 4),
        "input_level_dbfs": round(rms_dbfs(window), 1),
        "model": str(model),
        "contract": c.hash,
        "synth": player.identity,
        "note": note,
        "values": named,
        "params": describe(values, c),
        "refinement": refinement,  # multi-scale spectral distance to the input, model alone vs refined
    }
    return MatchResult(named, note, report["onset_s"], np.asarray(rendered, np.float32), window, report)


def write_match(result: MatchResult, out: Path, contract: Contract) -> None:
    """params.json, match.wav and compare.png of a MatchResult into the directory `out`, as one unit
    (core.atomic.write_all): all three new, or, on any error (a full disk: DiskFull, naming the path
    and the space needed), the three old ones untouched."""
    import io

    from synthmatch.bridge.core.atomic import write_all
    from synthmatch.training.render import wav_bytes

    params = (json.dumps(result.report, indent=1, allow_nan=False) + "\n").encode()  # never NaN
    png = io.BytesIO()
    identity = result.report["synth"]
    plot_compare(
        png,
        result.window,
        result.rendered,
        list(result.values.values()),
        contract,
        f"{Path(result.report['input']).name}: matched parameters",
        "reference synth" if identity == "reference" else identity.split(" ")[0][len("vst3:") :],
    )
    wav = wav_bytes(result.rendered, contract.audio.sample_rate)
    write_all({out / "params.json": params, out / "match.wav": wav, out / "compare.png": png.getvalue()})


def main(args) -> int:
    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.bridge.core.outpaths import writable_dir

    c = contract_mod.load(args.contract)
    model_path(args.model)  # before the output directory is made
    out = writable_dir(args.out_dir, "--out-dir")  # before any work: a bad place fails in a second
    result = match_file(
        args.input,
        args.model,
        refine_passes=args.refine_passes,
        budget_ms=args.budget,
        synth=args.synth,
        profile=args.profile,
        backend=args.backend,
        channel=args.channel,
        contract=c,
    )
    write_match(result, out, c)
    print(json.dumps({"out_dir": str(out), "onset_s": result.onset_s, "note": result.note, "values": result.values}))
    return 0
