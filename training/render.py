"""`synthmatch render`: one patch through the reference synth to a WAV file."""

from __future__ import annotations

import json
from pathlib import Path

from synthmatch.bridge.core.audiofile import wav_bytes  # the standard header (sox takes it silently)
from synthmatch.bridge.core.errors import UsageError


def read_params(text: str, contract) -> list[float]:
    """--params: a JSON file or inline JSON -> the 16 normalised values in contract order.

    Accepted: {name: value} with all 16 names, or `synthmatch match`'s params.json (its "values"). A value
    is a number in [0, 1]; JSON true/false are refused (not numbers here)."""
    inline = text.lstrip().startswith("{")
    where = "--params" if inline else text
    if inline:
        raw = text
    else:
        path = Path(text)
        if path.is_dir():
            raise UsageError(f"{path}: is a directory; give a JSON file such as match/params.json")
        try:
            raw = path.read_text()
        except FileNotFoundError:
            raise UsageError(
                f"{path}: no such file; give a JSON file or inline JSON '{{\"osc1_pitch\": 0.5, ...}}'"
            ) from None
        except (PermissionError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: cannot read it as text ({e}); give a readable JSON file") from None
    try:
        d = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not valid JSON ({e})") from None
    if isinstance(d, dict) and isinstance(d.get("values"), dict):  # match's params.json
        d = d["values"]
    if not isinstance(d, dict):
        raise UsageError(
            f"{where}: expected an object {{name: value}} with {len(contract.names)} parameters "
            "(or match's params.json)"
        )
    for name, v in d.items():
        if isinstance(v, bool):
            raise UsageError(f"{where}: {name} = {json.dumps(v)}: give a number in [0, 1], not true/false")
    return contract.values_from_dict(d, where=where)


def main(args) -> int:
    from synthmatch.bridge.core.atomic import write_atomic
    from synthmatch.bridge.core.outpaths import writable_file

    out = writable_file(args.out, "--out")  # before rendering: a bad place fails at once
    if out.suffix.lower() != ".wav":
        raise UsageError(f"--out {out}: render writes a WAV file; give a name ending in .wav, e.g. {out}.wav")
    import torch

    from synthmatch.bridge.core import contract as contract_mod
    from synthmatch.training.synths.reference import ReferenceSynth
    from synthmatch.training.synths.sampling import sample_params

    c = contract_mod.load(args.contract)
    if args.random:
        values = sample_params(c, args.seed, [0])[0].tolist()
    else:
        values = read_params(args.params, c)
    audio = ReferenceSynth(c).render(torch.tensor([values]), note=args.note)[0].numpy()
    try:
        write_atomic(out, wav_bytes(audio, c.audio.sample_rate))  # a full disk: DiskFull, one line
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write the WAV file ({e.strerror or e}); choose another path") from None
    note = c.audio.note if args.note is None else args.note
    print(json.dumps({"out": str(out), "note": note, "values": dict(zip(c.names, map(float, values)))}))
    return 0
