"""Training data: examples i = f(seed, i) rendered by a synth, on the fly or stored in shards.

    onthefly     batches rendered on the fly by the reference synth; fixed val/test splits cached on disk
    shards       the sharded dataset format (plan, manifest, shard files, checksums) and reading it back
    shardrender  rendering a sharded dataset in worker processes, resumably (`synthmatch dataset`)
    featcache    a model's front-end views of a sharded dataset, computed once for many epochs
    gm           General MIDI test notes: FluidR3 instruments through fluidsynth (evaluation's out-of-domain)

Imports training.synths and training.model (the front-ends whose views it stores).
"""
