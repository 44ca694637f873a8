"""CPU-scale study (≤ 30 minutes on 2 cores, end to end): paper A's system and H target on a
128² DNS → 32² grid, 24 trajectories (20 train / 4 test), snapshots every 0.1 s over t = 4–8 s;
a paper-A-shaped conditional FNO (modes 8, width 20, 4 layers, embed 128) conditioned on ω and the
interpolated sparse measurements; the papers' VE SDE (σ = 26), Euler–Maruyama sampler (10 steps,
t ∈ [1e-3, 0.1]); Adam with a cosine schedule.

    python experiments/generate_data.py  --config=experiments/configs/cpu_small.py --workdir=W
    python experiments/train.py          --config=experiments/configs/cpu_small.py --workdir=W
    python experiments/train.py          --config=experiments/configs/cpu_small.py --workdir=W \\
        --config.model.kind=regression
    python experiments/evaluate_offline.py --config=experiments/configs/cpu_small.py --workdir=W
    python experiments/simulate.py       --config=experiments/configs/cpu_small.py --workdir=W

The online test runs 16 members from t = 5 to 9 s (4000 steps; the data end at 8 s) with the
closure from the diffusion model, the regression baseline, the DNS's exact closure, and none.
"""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "cpu_small"
    config.data.fine_size = 128
    config.data.coarse_size = 32
    config.data.num_trajectories = 24
    config.data.num_test = 4
    config.data.t_burn_in = 4.0
    config.data.t_end = 8.0
    config.data.trajectories_per_chunk = 8
    config.data.zero_shot_sizes = (64, 128)
    config.model.embed_dim = 128
    config.training.batch_size = 32
    config.training.schedule = "cosine"
    config.training.num_epochs = 60
    config.training.warmup_steps = 50
    config.training.checkpoint_every = 250
    config.training.log_every = 25
    config.evaluation.ensemble_size = 10
    config.evaluation.max_snapshots = 64
    # online test (experiments/simulate.py): 4 s from t = 5, one second past the data's end
    config.simulation.t_start = 5.0
    config.simulation.t_end = 9.0
    config.simulation.ensemble_size = 16
    config.simulation.save_interval = 0.05
    config.simulation.sources = ("none", "diffusion", "regression", "reference")
    config.simulation.figure_times = (6.0, 7.0, 8.0, 9.0)
    config.lock()
    return config
