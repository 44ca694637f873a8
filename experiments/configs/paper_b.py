"""Paper B: target H, condition ω only; 100 trajectories, T = 40 s, burn-in 20 s, snapshots
every 0.1 s, 90/10 split (arXiv 2506.20771).

The whole study (`make reproduce STUDY=paper_b`) is sized for about 10 minutes on one data-centre
GPU: each model trains for `training.train_seconds` = 60 s of optimiser steps, planned on that
GPU (`--config.training.train_seconds=0`: the paper's epochs); the other stages are estimated
from their FLOPs, not measured (README, "Reproducing the papers")."""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "paper_b"
    config.data.closure = "H"
    config.data.num_test = 10
    # P-CDM (arXiv 2506.20771): ω-only condition, modes 6, width 40, embed 512, σ = 30
    config.model.conditions = ("omega",)
    config.model.modes = 6
    config.model.width = 40
    config.model.embed_dim = 512
    config.diffusion.sigma = 30.0
    config.sampler.t_max = 0.4
    config.data.trajectories_per_chunk = 25  # one batched DNS of 25 trajectories per chunk
    config.training.train_seconds = 60.0
    config.simulation.sources = ("none", "diffusion", "regression", "reference")
    config.lock()
    return config
