"""Where the 16 values go: one `send(update)` seam (sinks), MIDI CC/notes (midi, over midiports) and
OSC and print. Imports core only.
"""
