"""The live matcher's ground: the reference synth and the distance, in numpy (no torch).

A rank-1 layer beside audio/, engines/ and outputs/: imports only core/.

- `synth`: the reference synth's torch-free definitions (harmonic series of the wavetable shapes, filter
  constants, reverb impulse response; training/synths/reference.py imports them from here) and `Synth`, a numpy
  renderer of the same signal path that agrees with training's torch ReferenceSynth. Its parts,
  `Synth.harmonics` (each oscillator's f0 and filtered complex harmonic amplitudes) and `Synth.envelope`,
  serve a fast distance that judges candidates without rendering audio.
- `distance`: the multi-scale spectral distance of training/model/metrics.py in numpy, with the target's
  spectra computed once (`Target`) and candidates judged in a batch.
"""
