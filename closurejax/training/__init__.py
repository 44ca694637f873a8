"""Training: the jit-compiled trainer, checkpoints with exact resume, and a study's model trained
or loaded from its config. Public names, imported on first use:

    from closurejax.training import train, load
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run": ("load", "params_digest", "train"),
        "trainer": ("OptimConfig", "Trainer"),
        "state": ("TrainState",),
        "checkpoint": (
            "CheckpointManager",
            "CorruptCheckpointError",
            "IncompatibleCheckpointError",
        ),
    },
)
