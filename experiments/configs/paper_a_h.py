"""Paper A (journal version): closure target H = −u·∇ω + σẆ, 256² DNS → 64², 100 trajectories,
snapshots every 0.1 s over t = 20–40 s, 95/5 split (arXiv 2408.02965, data v2).

The whole study (`make reproduce STUDY=paper_a_h`) is sized for about 10 minutes on one
data-centre GPU: each model (the score model and the regression baseline) trains for
`training.train_seconds` = 90 s of optimiser steps, planned on that GPU (paper A: 1000 epochs,
95 000 steps at batch 200; `--config.training.train_seconds=0` trains those). The other stages
are estimated from their FLOPs, not measured (no accelerator was available): README,
"Reproducing the papers"."""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "paper_a_h"
    config.data.closure = "H"
    config.model.conditions = ("omega", "sparse_interpolated")
    config.data.trajectories_per_chunk = 25  # one batched DNS of 25 trajectories per chunk
    config.training.train_seconds = 90.0
    config.simulation.sources = ("none", "diffusion", "regression", "reference")
    config.lock()
    return config
