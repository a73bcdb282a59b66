"""Audio in and what is heard in it: inputs (sounddevice and files; the callback only copies into a
preallocated ring), the ring buffer, PortAudio/JACK plumbing, onsets, pitch and the note stage.
Imports core only.
"""
