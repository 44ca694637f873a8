"""Paper A's H study at the papers' resolution, reduced in data and training to fit a 2-core CPU.

Kept from paper A (arXiv 2408.02965, journal version; the data of its v2 setup): the 256² DNS
subsampled with stride 4 to 64², ν = 1e-3, the diagonal forcing and the smooth stochastic
forcing (σ = 5e-5, α = 0.005, κ = 10), dt = 1e-3, snapshots every 0.1 s over t = 20–40 s, target
H = −u·∇ω + σẆ, conditions ω and the bicubic-interpolated sparse measurements of H on every 4th
point, the score network (modes 8, width 20, 4 layers, embed 256), the VE SDE (σ = 26), the
10-step Euler–Maruyama sampler on t ∈ [1e-3, 0.1], and the online test (64² solver, t = 30 → 50 s,
H sampled every 5 steps, reuse noise 5e-5).

Reduced: 24 trajectories (20 train / 4 test: 4020 training snapshots, 21 % of the paper's
19 000), training at batch 32 for 24 epochs (≈ 3000 steps, against the paper's 95 000 steps at
batch 200: 0.5 % of its sample presentations), the offline table on 100 test snapshots with
10 samples each, the online ensemble of 8 members (paper B: 100).

Changed against paper A, because it trains a better model in the same budget: the score network's
output is EDM-preconditioned (Karras et al. 2022; `diffusion.parameterization = "edm"`) instead of
the papers' output/σ(t), with σ_data = 0.02 — near the spread of H given the conditions, not H's
whole standard deviation (0.213 over the training split): with 0.213 the network has to cancel
98 % of its own noisy input at the sampler's smallest noise level, with 0.02 it predicts the
closure itself. At 3 000 steps σ_data = 0.02 gives single samples 1.4–1.5 × more accurate than
σ_data = 0.213 and calibrated ensembles (README, "Recipe tries").

The whole study, every stage resumable (`closurejax.evaluation.study`):

    make reproduce STUDY=paper_a_h_cpu WORKDIR=/path/to/workdir

or stage by stage with C=experiments/configs/paper_a_h_cpu.py:

    python experiments/generate_data.py    --config=$C --workdir=$W
    python experiments/train.py            --config=$C --workdir=$W
    python experiments/train.py            --config=$C --workdir=$W --config.model.kind=regression
    python experiments/evaluate_offline.py --config=$C --workdir=$W
    python experiments/simulate.py         --config=$C --workdir=$W
"""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "paper_a_h_cpu"
    config.data.closure = "H"
    config.data.num_trajectories = 24
    config.data.num_test = 4
    config.data.trajectories_per_chunk = 2
    config.model.conditions = ("omega", "sparse_interpolated")
    config.diffusion.parameterization = "edm"
    config.diffusion.sigma_data = 0.02  # not H's std (0.213): README, "Recipe tries"
    config.training.batch_size = 32
    config.training.schedule = "cosine"
    config.training.num_epochs = 24
    config.training.warmup_steps = 100
    config.training.checkpoint_every = 100
    config.training.log_every = 25
    config.evaluation.ensemble_size = 10
    config.evaluation.max_snapshots = 100
    config.simulation.ensemble_size = 8
    config.simulation.sources = ("none", "diffusion", "regression", "reference")
    config.lock()
    return config
