"""The cost–accuracy frontier of the closure models on the paper-resolution CPU study (issue 11).

Data: `paper_a_h_cpu`'s (the 256² DNS subsampled to 64², target H; 20 training / 4 test
trajectories), so the frontier runs in that study's workdir and reuses its dataset. Condition ω
only, paper B's VE SDE (σ = 30) and sampler window (t ∈ [1e-3, 0.4], Karras ρ = 7) for every
model (arXiv 2506.20771). Models, each trained for the same 30 min of wall-clock time on the
machine that runs the frontier (`closurejax.evaluation.frontier`, stage "plan"), all with one
recipe (Adam, lr 1e-3, 100-step warm-up, cosine decay over the planned steps, batch 32, EMA 0.999):

* `pcdm` — paper B's P-CDM (FNO modes 6, width 40, embed 512);
* `pcdm_small` — a smaller FNO (paper A's: modes 8, width 20, embed 256);
* `lcdm` — paper B's L-CDM (two ≈ 9 M-parameter autoencoders, 64² → 16², latent FNO modes 4,
  width 20), joint training with paper B's loss weights (10, 0.1, 0.1, 0.01), the KL term summed
  over latent entries like the DSM term (`latent.kl_reduction = "sum"`: at paper B's "mean" the
  joint latents collapse; closurejax.diffusion.latent);
* `lcdm_two_stage` — the same autoencoders trained first on reconstruction, then the latent
  score on their frozen latents (paper B's baseline);
* `lcdm_fast16`, `lcdm_fast8` — the cost-designed autoencoders `AE_PRESETS["fast16"]` (16²
  latent) and `["fast8"]` (8² latent), joint training as `lcdm`.

Each is scored with 10-step Euler–Maruyama and DPM-Solver++(2M) at 2 and 4 NFE on 100 test
snapshots × 10 samples, and timed per closure sample at batch 1 and 100.

    make reproduce STUDY=frontier_h_cpu WORKDIR=/path/to/paper_a_h_cpu/workdir
"""

from closurejax.config import frontier_section
from closurejax.diffusion.latent_model import AE_PRESETS
from experiments.configs import paper_a_h_cpu


def get_config():
    config = paper_a_h_cpu.get_config()
    config.unlock()
    config.name = "frontier_h_cpu"
    config.model.conditions = ("omega",)  # paper B: ω only
    config.model.modes = 6
    config.model.width = 40
    config.model.embed_dim = 512
    config.diffusion.sigma = 30.0
    config.diffusion.parameterization = "score_over_sigma"  # paper B's (the study's is EDM)
    config.diffusion.sigma_data = 1.0
    config.sampler.t_max = 0.4
    config.evaluation.zero_shot = False  # the autoencoders are convolutional: 64² only
    config.simulation.sources = ("none", "diffusion", "reference")
    kl_sum = {"kl_reduction": "sum"}
    config.frontier = frontier_section()
    config.frontier.train_seconds = 1800.0
    config.frontier.models = {
        "pcdm": {"model": {"kind": "score"}},
        "pcdm_small": {"model": {"kind": "score", "modes": 8, "width": 20, "embed_dim": 256}},
        "lcdm": {"model": {"kind": "latent"}, "latent": {**AE_PRESETS["paper_b"], **kl_sum}},
        "lcdm_two_stage": {
            "model": {"kind": "latent"},
            "latent": {
                **AE_PRESETS["paper_b"],
                "training_mode": "two_stage",
                "stage1_weights": (10.0, 0.1, 0.0),
            },
        },
        "lcdm_fast16": {"model": {"kind": "latent"}, "latent": {**AE_PRESETS["fast16"], **kl_sum}},
        "lcdm_fast8": {"model": {"kind": "latent"}, "latent": {**AE_PRESETS["fast8"], **kl_sum}},
    }
    config.lock()
    return config
