"""synthmatch's runtime: hear a sound, run the exported model, send 16 values to a synth. Never imports torch.

Layers, each importing only those below it (tests/test_layers.py checks it):

    cli, devices          the commands; training adds its own (training/commands.py, no torch), their
                          handlers imported when they run
    live/                 daemon, its config, control server
    audio/  engines/  match/  outputs/    inputs and analysis | inference backends | the reference synth
                          in numpy and the spectral distance (the matcher's ground) | MIDI, OSC, print
    core/                 contract, front-end reference, model file, errors, loaders, files

audio/, engines/, match/ and outputs/ sit side by side and do not import one another. synthmatch.training
imports core/, audio/, engines/ and match/ (never live/ or the CLI).
"""
