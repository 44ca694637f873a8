"""Paper B's L-CDM with a cost-designed autoencoder pair, 64² → 16² latents (closurejax issue 11).

As `paper_b_lcdm_joint` (data, ω-only condition, latent FNO modes 4 width 20, VE σ = 30, 10-step
Euler–Maruyama to t_max = 0.4, joint training, 500 epochs) except:

* autoencoders `AE_PRESETS["fast16"]` (closurejax.diffusion.latent_model): a 2×2 space-to-depth
  stem, so nothing but the stem touches the 64² grid; one level 64 → 128 channels on 32²
  (one ResBlock, stride-2 convolution), 8-head attention on the 16² latent grid; 2.1 M parameters
  per autoencoder and 1.60 GFLOP per sample for encode ω + decode H (paper B's: 9.0 M and 9.61
  GFLOP, 6.0× more; closurejax.models.flops.autoencoder_flops);
* `latent.kl_reduction = "sum"`: the KL term reduced over latent entries like the DSM term, so
  the jointly trained latents keep an O(1) spread instead of collapsing (paper B's weights
  otherwise, (10, 0.1, 0.1, 0.01)).

    python experiments/train.py --config=experiments/configs/paper_b_lcdm_fast16.py --workdir=W
"""

from closurejax.diffusion.latent_model import AE_PRESETS
from experiments.configs import paper_b_lcdm_joint


def get_config():
    config = paper_b_lcdm_joint.get_config()  # locked: only existing fields are set below
    config.name = "paper_b_lcdm_fast16"
    config.latent.update(AE_PRESETS["fast16"])
    config.latent.kl_reduction = "sum"
    return config
