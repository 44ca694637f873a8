"""Small embedded study for `make demo` and the tests: paper A's system and H target on a
128² DNS → 32² coarse grid, 8 trajectories (2 for test), snapshots every 0.1 s over t = 4–8 s.
Runs in about a minute on a 2-core CPU."""

from experiments.configs.base import base_config


def get_config():
    config = base_config()
    config.name = "demo"
    config.data.fine_size = 128
    config.data.coarse_size = 32
    config.data.num_trajectories = 8
    config.data.num_test = 2
    config.data.t_burn_in = 4.0
    config.data.t_end = 8.0
    config.data.snapshot_interval = 0.1
    config.data.trajectories_per_chunk = 4
    config.data.zero_shot_sizes = (64,)
    config.lock()
    return config
