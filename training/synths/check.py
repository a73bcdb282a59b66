"""`synthmatch dataset probe`: check a profile against an installed plugin before rendering with it."""

from __future__ import annotations

import time

import numpy as np

from synthmatch.bridge.core.contract import Contract
from synthmatch.training.synths import SynthError, parse_spec
from synthmatch.training.synths.sampling import distribution_mean


def probe(contract: Contract, spec: str, profile: str) -> dict:
    """Open the plugin with its profile (every name checked, silence refused) and describe it: the
    mapping with the plugin's own text at v = 0, 0.5, 1 (to compare with its knobs), the fixed values,
    the other automatable parameters, how it is reset between renders (training.synths.vst3: "clear" in
    place, or "reinstantiate"), and one mean-patch render's level and time."""
    s = parse_spec(spec, profile)
    if s.kind != "vst3":
        raise SynthError("probe is for plugins: --synth vst3:PATH")
    synth = s.open(contract)
    params = synth.plugin._parameters
    mapping = []
    for i, k, m in synth._maps:
        q = params[k]
        mapping.append(
            {
                "param": m.param,
                "plugin": m.plugin,
                "map": m.map,
                "label": q.label,
                "text_at": {str(v): q.get_text_for_raw_value(m.to_raw(v, contract)) for v in (0.0, 0.5, 1.0)},
            }
        )
    fixed = [
        {"plugin": n, "raw": raw, "text": params[k].get_text_for_raw_value(raw)}
        for (k, raw), (n, _) in zip(synth._fixed, synth.profile.fixed)
    ]
    used = set(synth.profile.host_names())
    other = [q.name for q in params if q.is_automatable and q.name not in used and not q.name.startswith("MIDI Ch.")]
    mean = np.array([distribution_mean(x) for x in synth.sampling.samples], np.float32)
    t0 = time.perf_counter()
    audio = synth.render(mean[None])[0]
    seconds = time.perf_counter() - t0
    return {
        "plugin": synth.plugin.name,
        "version": synth.plugin.version,
        "maker": synth.plugin.manufacturer_name,
        "identity": synth.identity,
        "profile": synth.profile.source,
        "reset": synth.reset_mode,
        "mapped": mapping,
        "fixed": fixed,
        "unmapped": dict(synth.profile.unmapped),
        "other_parameters": other,
        "mean_patch": {
            "peak": round(float(np.abs(audio).max()), 5),
            "rms": round(float(np.sqrt(np.mean(audio**2))), 5),
            "render_s": round(seconds, 4),
        },
    }
