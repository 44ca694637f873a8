"""Paper B: target H, condition ω only; 100 trajectories, T = 40 s, burn-in 20 s, snapshots
every 0.1 s, 90/10 split (papers.md, "Paper B")."""

from experiments.configs.base import base_config


def get_config():
    config = base_config()
    config.name = "paper_b"
    config.data.closure = "H"
    config.data.num_test = 10
    config.lock()
    return config
