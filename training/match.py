"""`synthmatch match INPUT`: match one sound file offline and write what was found.

INPUT (wav, flac, ogg...; any rate; stereo mixed down) -> onset -> the 4 s window that starts there, as
the training sounds do (shorter files zero-padded) -> model -> refinement by re-rendering
(training.refine; --refine-passes 0 turns it off) -> in --out-dir:
  params.json   normalised and physical values, Massive names, MIDI CCs, model and contract
  match.wav     the reference synth playing the prediction (16 kHz mono float)
  compare.png   input vs match log-mel spectrograms and the 16 parameters as bars
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bridge.cli import UsageError
from bridge.contract import Contract
from bridge.onset import OnsetSettings, offline_onsets, rms_dbfs

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default.onnx"
SILENCE_DBFS = -70.0  # a whole file below this peak level is treated as silent


def aligned_window(audio: np.ndarray, contract: Contract, settings: OnsetSettings | None = None,
                   where: str = "input") -> tuple[np.ndarray, int]:
    """(T,) mono at the contract rate -> ((num_samples,) window starting at the first onset, onset).

    Raises UsageError for empty or silent audio."""
    n = contract.audio.num_samples
    if audio.size == 0:
        raise UsageError(f"{where}: no audio samples; give a file with sound in it")
    peak = float(np.max(np.abs(audio)))
    if peak == 0 or 20 * np.log10(peak) < SILENCE_DBFS:
        raise UsageError(f"{where}: silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS); "
                         f"record louder or check the file")
    settings = settings or OnsetSettings()
    # a quiet recording still has a start: lower the threshold to 30 dB under its own peak if needed
    if 20 * np.log10(peak) - 30 < settings.threshold_db:
        level = 20 * np.log10(peak) - 30
        settings = OnsetSettings(**{**settings.__dict__, "threshold_db": level,
                                    "floor_db": min(settings.floor_db, level - 20)})
    onsets = offline_onsets(audio, settings, contract.audio.sample_rate)
    start = onsets[0] if onsets else int(np.argmax(np.abs(audio) > 0))
    window = np.zeros(n, dtype=np.float32)
    chunk = audio[start: start + n]
    window[: chunk.size] = chunk
    return window, start


def predict(model: str | Path, audio: np.ndarray, contract: Contract, backend: str = "onnxruntime") -> np.ndarray:
    """(B, num_samples) -> (B, 16) normalised values from an exported model."""
    from bridge.engine import load_engine

    engine = load_engine(model, backend=backend, contract=contract)
    try:
        return engine.infer(np.ascontiguousarray(audio, dtype=np.float32))
    finally:
        engine.close()


def describe(values, contract: Contract) -> list[dict]:
    return [{"name": p.name, "massive": p.massive, "cc": p.cc, "normalised": round(float(v), 4),
             "physical": round(float(p.to_physical(float(v))), 4), "unit": p.unit}
            for p, v in zip(contract.params, values)]


def plot_compare(path: Path, target: np.ndarray, match: np.ndarray, values, contract: Contract,
                 title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bridge.frontend import log_mel

    mels = log_mel(np.stack([target, match]), contract)
    fig = plt.figure(figsize=(11, 7), constrained_layout=True)
    grid = fig.add_gridspec(2, 2, height_ratios=[1, 1])
    extent = [0, contract.audio.duration_s, 0, contract.frontend.n_mels]
    for col, (mel, name) in enumerate(zip(mels, ["input (aligned 4 s)", "match (reference synth)"])):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(mel, origin="lower", aspect="auto", extent=extent, vmin=mels.min(), vmax=mels.max(), cmap="magma")
        ax.set(title=name, xlabel="time (s)", ylabel="mel band")
    ax = fig.add_subplot(grid[1, :])
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), contract.names, rotation=45, ha="right")
    ax.set(ylim=(0, 1), ylabel="normalised value", title=title)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(args) -> int:
    import torch

    from bridge import audiofile, contract as contract_mod
    from training.synth import ReferenceSynth

    c = contract_mod.load(args.contract)
    model = Path(args.model) if args.model else DEFAULT_MODEL
    if not model.exists():
        raise UsageError(f"{model}: no model file; train and export one (synthmatch train / export) "
                         f"or pass --model PATH")
    try:
        audio = audiofile.read_mono(args.input, c.audio.sample_rate, channel=args.channel)
    except audiofile.AudioFileError as e:
        raise UsageError(str(e)) from None
    window, onset = aligned_window(audio, c, where=str(args.input))
    predicted = predict(model, window[None], c, backend=args.backend)[0]
    synth = ReferenceSynth(c)
    values, refinement = predicted, None
    if args.refine_passes:
        from training.refine import RefineConfig, refine

        cfg = RefineConfig(passes=args.refine_passes)
        refined, before, after = refine(c, window[None], predicted[None], cfg, synth=synth)
        values = refined[0]
        refinement = {"passes": cfg.passes, "renders": cfg.renders_per_sound(c),
                      "distance_model": round(float(before[0]), 4), "distance_refined": round(float(after[0]), 4),
                      "model_values": {p.name: round(float(v), 4) for p, v in zip(c.params, predicted)}}
    rendered = synth.render(torch.from_numpy(values[None].copy()))[0].numpy()

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "input": str(args.input), "onset_s": round(onset / c.audio.sample_rate, 4),
        "input_level_dbfs": round(rms_dbfs(window), 1), "model": str(model), "contract": c.hash,
        "values": {p.name: round(float(v), 4) for p, v in zip(c.params, values)},
        "params": describe(values, c),
        "refinement": refinement,  # multi-scale spectral distance to the input, model alone vs refined
    }
    (out / "params.json").write_text(json.dumps(report, indent=1) + "\n")
    audiofile.write(out / "match.wav", rendered, c.audio.sample_rate)
    plot_compare(out / "compare.png", window, rendered, values, c, f"{Path(args.input).name}: matched parameters")
    print(json.dumps({"out_dir": str(out), "onset_s": report["onset_s"], "values": report["values"]}))
    return 0
