"""core.names.pick: the one name picker behind audio input devices and MIDI ports."""

from __future__ import annotations

import pytest

from synthmatch.bridge.core.errors import UsageError
from synthmatch.bridge.core.names import pick
from synthmatch.bridge.outputs.midiports import MidiPortError, pick_port

PORTS = ["Midi Through:Port-0", "Massive:in", "Massive Legacy:in", "system:playback_1"]


def test_exact_name_wins_over_substrings():
    assert pick(PORTS, "Massive:in", "port") == 1  # also a substring of nothing else, but exact first
    assert pick(["synth", "synth 2"], "synth", "port") == 0  # exact, though "synth 2" contains it too
    assert pick(["a", "a"], "a", "port") == 0  # listed twice: the first


def test_a_unique_case_insensitive_substring():
    assert pick(PORTS, "legacy", "port") == 2
    assert pick(PORTS, "THROUGH", "port") == 0


def test_none_lists_the_candidates_and_where_to_look():
    with pytest.raises(UsageError) as e:
        pick(PORTS, "serum", "MIDI port", hint="see `synthmatch devices`")
    msg = str(e.value)
    assert msg.startswith("no MIDI port matches 'serum'; available: 'Midi Through:Port-0', 'Massive:in'")
    assert msg.endswith("; see `synthmatch devices`") and "\n" not in msg
    with pytest.raises(UsageError, match=r"^no port matches 'x'; available: none$"):
        pick([], "x", "port")


def test_several_list_only_the_matches_and_say_what_to_do():
    with pytest.raises(UsageError) as e:
        pick(PORTS, "massive", "MIDI port")
    msg = str(e.value)
    assert msg.startswith("MIDI port 'massive' is ambiguous, it matches 'Massive:in', 'Massive Legacy:in';")
    assert "give more of the name" in msg and "Through" not in msg


def test_the_caller_chooses_the_error_and_the_labels():
    with pytest.raises(MidiPortError):
        pick(PORTS, "serum", "port", MidiPortError)
    with pytest.raises(UsageError, match=r"^input: no device matches 'x'; available: A \(2 in\)$"):
        pick(["a"], "x", "device", lambda m: UsageError(f"input: {m}"), labels=["A (2 in)"])


def test_pick_port_is_pick_with_midi_port_errors():
    assert pick_port(PORTS, "legacy") == 2
    with pytest.raises(
        MidiPortError, match=r"^no MIDI output port \(jack\) matches 'serum'; available: .*synthmatch devices"
    ):
        pick_port(PORTS, "serum", "output port (jack)")
    with pytest.raises(MidiPortError, match="ambiguous"):
        pick_port(PORTS, "in", "input port (alsa)")
