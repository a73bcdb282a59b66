"""synthmatch's runtime: hear a sound, run the exported model, send 16 values to a synth. Never imports torch.

Layers, each importing only those below it (tests/test_layers.py checks it):

    cli, devices          the commands; training adds its own (training/commands.py, no torch), their
                          handlers imported when they run
    live/                 daemon, its config, control server, refiner
    audio/  engines/  outputs/    inputs and analysis | inference backends | MIDI, OSC, print
    core/                 contract, front-end reference, model file, errors, loaders, files

audio/, engines/ and outputs/ sit side by side and do not import one another. synthmatch.training imports
core/, audio/ and engines/ (never live/ or the CLI).
"""
