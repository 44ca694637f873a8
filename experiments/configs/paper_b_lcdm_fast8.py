"""Paper B's L-CDM with the cheapest preset autoencoders, 64² → 8² latents (closurejax issue 11).

As `paper_b_lcdm_fast16` except the autoencoders `AE_PRESETS["fast8"]`
(closurejax.diffusion.latent_model): a 4×4 space-to-depth stem, one level 64 → 128 channels on
16², attention on the 8² latent grid; 2.1 M parameters per autoencoder and 0.39 GFLOP per sample
for encode ω + decode H (24× fewer than paper B's 9.61). The latent FNO keeps modes 4 (the most
an 8² grid holds) and width 20; `latent.kl_reduction = "sum"` as in `paper_b_lcdm_fast16`.

    python experiments/train.py --config=experiments/configs/paper_b_lcdm_fast8.py --workdir=W
"""

from closurejax.diffusion.latent_model import AE_PRESETS
from experiments.configs import paper_b_lcdm_fast16


def get_config():
    config = paper_b_lcdm_fast16.get_config()  # locked: only existing fields are set below
    config.name = "paper_b_lcdm_fast8"
    config.latent.update(AE_PRESETS["fast8"])
    return config
