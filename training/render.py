"""`synthmatch render`: one patch through the reference synth to a WAV file."""

from __future__ import annotations

import json
from pathlib import Path

from bridge.cli import UsageError


def main(args) -> int:
    import torch

    from bridge import audiofile, contract as contract_mod
    from training.sampling import sample_params
    from training.synth import ReferenceSynth

    c = contract_mod.load(args.contract)
    if args.random:
        values = sample_params(c, args.seed, [0])[0].tolist()
    else:
        path = Path(args.params)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except json.JSONDecodeError as e:
            raise UsageError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise UsageError(f"{path}: expected an object {{name: value}} with {len(c.names)} parameters")
        values = c.values_from_dict(d, where=str(path))
    audio = ReferenceSynth(c).render(torch.tensor([values]))[0].numpy()
    audiofile.write(args.out, audio, c.audio.sample_rate)
    print(json.dumps({"out": str(args.out), "values": dict(zip(c.names, map(float, values)))}))
    return 0
