"""Paper B's latent model (L-CDM), joint training (arXiv 2506.20771).

Data, target (H), condition (ω only), VE SDE (σ = 30) and sampler (10 Euler–Maruyama steps,
t ∈ [1e-3, 0.4], Karras ρ = 7) as `paper_b` (the P-CDM study; same dataset and workdir). Two
convolutional autoencoders (64² → 1×16×16 latent: channels 64 → 128 → 256, one ResBlock per level,
8-head self-attention, GroupNorm 32; ≈ 9 M parameters each) and a latent FNO score network (modes
4, width 20, embed 256) trained together with one Adam optimiser: 500 epochs, batch 200, lr 1e-3,
×0.5 every 100 epochs, loss 10·MSE(Ĥ, H) + 0.1·MSE(ω̂, ω) + 0.1·DSM(z_H | z_ω) + 0.01·KL(z_H).
The `model` section keeps paper B's P-CDM (modes 6, width 40, embed 512): with
`--config.model.kind=score` this config trains the P-CDM it is compared with.

    python experiments/generate_data.py    --config=experiments/configs/paper_b.py --workdir=W
    python experiments/train.py            --config=experiments/configs/paper_b_lcdm_joint.py \\
        --workdir=W                         # -> W/latent
    python experiments/evaluate_offline.py --config=experiments/configs/paper_b_lcdm_joint.py \\
        --workdir=W                         # -> W/offline_latent (beside W/score if trained)
"""

from experiments.configs import paper_b


def get_config():
    config = paper_b.get_config()  # locked: only existing fields are set below
    config.name = "paper_b_lcdm_joint"
    config.model.kind = "latent"
    config.latent.training_mode = "joint"
    config.latent.ae_channels = (64, 128, 256)
    config.latent.ae_num_res_blocks = 1
    config.latent.ae_attention = True
    config.latent.ae_num_heads = 8
    config.latent.ae_groups = 32
    config.latent.latent_channels = 1
    config.latent.width = 20
    config.latent.modes = 4
    config.latent.depth = 4
    config.latent.embed_dim = 256
    config.latent.loss_weights = (10.0, 0.1, 0.1, 0.01)
    config.training.batch_size = 200
    config.training.learning_rate = 1e-3
    config.training.schedule = "step"
    config.training.decay_factor = 0.5
    config.training.decay_every_epochs = 100
    config.training.num_epochs = 500
    config.training.train_seconds = 0.0  # paper B's 500 epochs, not the paper_b study's budget
    config.evaluation.zero_shot = False  # convolutional autoencoders: trained at 64² only
    return config
