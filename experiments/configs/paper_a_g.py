"""Paper A (first version): closure target G = νΔω + 2σẆ, 256² DNS → 64², same data plan as
paper_a_h (arXiv 2408.02965, data v2; the first version's 10-trajectory set is
`num_trajectories=10`, `num_test=2`, `t_burn_in=30`, `snapshot_interval=0.01`)."""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "paper_a_g"
    config.data.closure = "G"
    config.model.conditions = ("omega", "sparse_interpolated")
    config.lock()
    return config
