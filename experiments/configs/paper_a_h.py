"""Paper A (journal version): closure target H = −u·∇ω + σẆ, 256² DNS → 64², 100 trajectories,
snapshots every 0.1 s over t = 20–40 s, 95/5 split (arXiv 2408.02965, data v2)."""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "paper_a_h"
    config.data.closure = "H"
    config.model.conditions = ("omega", "sparse_interpolated")
    config.lock()
    return config
