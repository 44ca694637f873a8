"""Small embedded study for `make demo` and the tests: paper A's system and H target on a
128² DNS → 32² coarse grid, 8 trajectories (2 for test), snapshots every 0.1 s over t = 4–8 s;
a small conditional FNO (ω + interpolated sparse measurements) trained for a couple of minutes;
the online test from t = 5 to 8 s with 8 members, closure sampled every 5 steps by the papers'
10-step Euler–Maruyama sampler, against the run without closure. The whole demo takes a few
minutes on a 2-core CPU."""

from closurejax.config import base_config


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
    config.model.embed_dim = 128
    config.training.batch_size = 32
    config.training.schedule = "cosine"
    config.training.num_epochs = 60
    config.training.warmup_steps = 50
    config.training.checkpoint_every = 200
    config.training.log_every = 50
    config.evaluation.ensemble_size = 8
    config.evaluation.max_snapshots = 16
    config.simulation.t_start = 5.0
    config.simulation.t_end = 8.0
    config.simulation.ensemble_size = 8
    config.simulation.save_interval = 0.05
    config.simulation.figure_times = (5.75, 6.5, 7.25, 8.0)
    config.lock()
    return config
