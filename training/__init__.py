"""synthmatch's training side: synths, models, data, training runs, and the commands that use them (torch).

Wings, each importing only those below it (tests/test_layers.py checks it on every import statement):

    commands, export, evaluate,     on top: training's subcommands of `synthmatch` (commands: argparse only,
    match, refine, render, demo,    no torch; each handler imported when it runs) and the evaluation
    notesets                        helpers; they import the wings and one another, with no cycle
    run/                            a training run: config, what it reads, the loop, `synthmatch train`
    data/                           examples rendered on the fly or stored in shards, the front-end views cached,
                                    General MIDI test notes (gm: fluidsynth)
    model/                          front-ends, heads, models, metrics, checkpoints
    synths/                         the synth seam (base), the torch reference synth, VST3 plugins and
                                    their profiles, the sampling of patches and notes

No import cycle anywhere in the package, no relative imports, no sys.path edits, no import of scripts/.
Of the runtime, training imports bridge.core, bridge.audio, bridge.engines and bridge.match only (never
bridge.outputs, bridge.live or the CLI); the CLI imports training.commands alone.
"""
