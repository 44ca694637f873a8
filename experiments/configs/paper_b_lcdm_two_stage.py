"""Paper B's two-stage baseline of the latent model (arXiv 2506.20771).

As `paper_b_lcdm_joint` (same architecture, data, SDE and sampler), but trained in two runs:
stage 1 fits the two autoencoders on reconstruction alone (10·MSE(Ĥ, H) + 0.1·MSE(ω̂, ω), 500
epochs); stage 2 encodes the training set with the frozen stage-1 (EMA) encoders and fits the
latent FNO score on those latents by denoising score matching (500 epochs). Both with Adam, batch
200, lr 1e-3, ×0.5 every 100 epochs. `experiments/train.py` runs the stages in order
(W/latent_two_stage/autoencoders, then W/latent_two_stage/score); each resumes exactly.
"""

from experiments.configs import paper_b_lcdm_joint


def get_config():
    config = paper_b_lcdm_joint.get_config()
    config.name = "paper_b_lcdm_two_stage"
    config.latent.training_mode = "two_stage"
    config.latent.stage1_weights = (10.0, 0.1, 0.0)
    config.latent.stage1_epochs = 500
    return config
