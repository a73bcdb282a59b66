"""A training run (`synthmatch train`): its config, what it reads, its loop, put together.

    config       TrainConfig (the run's TOML, typed and validated) and Dist (this process in a DDP run)
    traindata    what a run reads from its config: this rank's batches and the validation set
    loop         the step, validation, checkpoints and metrics of a run, each usable alone
    train        the command: the process group, the run set up, resumed and driven

Imports training.synths, training.model and training.data.
"""
