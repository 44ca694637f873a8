"""CPU-scale latent study (paper B's L-CDM beside its ω-only P-CDM) on the `cpu_small` dataset.

The data sections (seed, physics, initial_condition, data) are exactly `cpu_small`'s, so this
study reuses a `cpu_small` workdir and its dataset (128² DNS → 32², 20 train / 4 test
trajectories, snapshots every 0.1 s over t = 4–8 s, target H). Paper B's setting otherwise: the
condition is ω only, VE SDE σ = 30, 10 Euler–Maruyama steps over t ∈ [1e-3, 0.4].

* Latent model (model.kind = "latent", joint training): two autoencoders 32² → 1×8×8 (channels
  8 → 16 → 32, one ResBlock per level, 4-head self-attention on the 8×8 tokens, GroupNorm 8;
  0.14 M parameters each) and a latent FNO score network (modes 4, width 20, 4 layers, embed
  128; 0.24 M), paper B's loss weights (10, 0.1, 0.1, 0.01).
* P-CDM it is compared with (`--config.model.kind=score`): `cpu_small`'s conditional FNO (modes
  8, width 20, 4 layers, embed 128; 0.86 M) conditioned on ω only, trained with the same
  schedule.

Both: Adam, batch 32, lr 1e-3, cosine decay after 50 warm-up steps, 80 epochs (2000 steps).

    W=workdirs/cpu_study C=experiments/configs
    python experiments/generate_data.py    --config=$C/cpu_small.py  --workdir=$W
    python experiments/train.py            --config=$C/cpu_latent.py --workdir=$W \\
        --config.model.kind=score           # the ω-only P-CDM -> W/score
    python experiments/train.py            --config=$C/cpu_latent.py --workdir=$W   # -> W/latent
    python experiments/evaluate_offline.py --config=$C/cpu_latent.py --workdir=$W

The two-stage baseline: add `--config.latent.training_mode=two_stage` to the last two commands.
"""

from experiments.configs import cpu_small


def get_config():
    config = cpu_small.get_config()  # locked: data sections untouched, only existing fields set
    config.name = "cpu_latent"
    config.model.kind = "latent"
    config.model.conditions = ("omega",)
    config.diffusion.sigma = 30.0
    config.sampler.t_max = 0.4
    config.latent.training_mode = "joint"
    config.latent.ae_channels = (8, 16, 32)
    config.latent.ae_groups = 8
    config.latent.ae_num_heads = 4
    config.latent.width = 20
    config.latent.modes = 4
    config.latent.depth = 4
    config.latent.embed_dim = 128
    config.latent.stage1_epochs = 80
    config.training.num_epochs = 80
    config.evaluation.zero_shot = False  # convolutional autoencoders: trained at 32² only
    return config
