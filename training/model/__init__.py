"""The model: raw audio (and the note played) -> 16 normalised parameters, and what judges and keeps it.

    frontend     the log-mel and constant-Q front-ends in torch (bridge.core.frontend's matrices)
    heads        output heads (16 sigmoids with MSE, or pitch as classes) and their losses
    models       AST and CNN models, their presets and ModelConfig; every model holds its front-end
    metrics      parameter MSE, spectral convergence, multi-scale spectral distance
    checkpoint   atomic save, safe load (weights_only), the exact model rebuilt from its config

Imports training.synths only (the synth identity a checkpoint records).
"""
