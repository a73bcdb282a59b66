"""Where the 16 values go: one `send(update)` seam (`base`: Sink, Update), the settings and OSC presets
(`config`), MIDI CC/notes (`midi`, over `midiports`), OSC (`osc`), print (`printer`) and synth output profiles
(`profile`); `build_sinks` here opens the enabled ones. Imports core only.

The sinks import `base` and `config`, never this package, so nothing in outputs/ imports in a cycle.
"""

from __future__ import annotations

from synthmatch.bridge.outputs.base import Sink
from synthmatch.bridge.outputs.config import OutputSettings, load_profile


def build_sinks(out: OutputSettings, contract) -> list[Sink]:
    """The enabled sinks, opened (a MIDI port that cannot be found raises MidiPortError here)."""
    from synthmatch.bridge.outputs.midi import MidiCCSink
    from synthmatch.bridge.outputs.osc import OscSink
    from synthmatch.bridge.outputs.printer import PrintSink

    prof = load_profile(out, contract)
    sinks: list[Sink] = []
    if out.midi.enabled:
        sinks.append(MidiCCSink(out.midi, contract, profile=prof))
    if out.osc.enabled:
        sinks.append(OscSink(out.osc, contract, profile=prof))
    if out.print.enabled:
        sinks.append(PrintSink(contract, physical=out.print.physical))
    return sinks
