"""The tiny study the end-to-end tests share: the demo config shrunk to a 32² DNS subsampled to
16², 3 trajectories (1 for test) of 5 snapshots, t = 0.01–0.05 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.configs import demo

TINY_DATA = dict(
    fine_size=32,
    coarse_size=16,
    num_trajectories=3,
    num_test=1,
    t_burn_in=0.01,
    t_end=0.05,
    snapshot_interval=0.01,
    trajectories_per_chunk=3,
    zero_shot_sizes=(32,),
)


TINY_LATENT = dict(
    ae_channels=(4, 8),
    ae_num_res_blocks=1,
    ae_attention=False,  # attention: tests/diffusion/test_latent_model.py and the paper configs
    ae_num_heads=2,
    ae_groups=2,
    latent_channels=1,
    width=8,
    modes=4,
    depth=1,
    embed_dim=16,
    stage1_epochs=2,
)
"""A tiny latent section: 4 → 8 channel autoencoders and a small latent FNO."""


TINY_SIMULATION = dict(
    trajectory=0,
    t_start=0.01,
    t_end=0.05,
    every=2,
    ensemble_size=2,
    save_interval=0.01,
    figure_times=(0.03, 0.05),
)
"""A 2-member online test from t = 0.01 to 0.05 s, the closure sampled every 2 steps."""


def tiny_config(**data_overrides: object) -> dict:
    """The demo config as a dict with the `data` section of `TINY_DATA` (plus overrides)."""
    config = demo.get_config().to_dict()
    config["data"].update(TINY_DATA)
    config["data"].update(data_overrides)
    return config


def tiny_online(fine: int = 32, coarse: int = 32) -> dict:
    """`tiny_config` with a tiny network, one-epoch training and a 2-member online test from
    t = 0.01 to 0.05 s (sources none and reference) on a `fine`² DNS → `coarse`² grid."""
    config = tiny_config(fine_size=fine, coarse_size=coarse, zero_shot_sizes=())
    config["model"].update(width=8, modes=4, depth=2, embed_dim=16)
    config["training"].update(
        batch_size=4, num_epochs=1, checkpoint_every=2, log_every=1, schedule="constant"
    )
    config["simulation"].update(TINY_SIMULATION, sources=("none", "reference"), animation=True)
    return config


def tiny_online_study(tmp_path_factory: Any) -> tuple[dict, Path]:
    """(config, workdir) of a generated `tiny_online()` dataset: the online tests' study."""
    from closurejax.data import generate

    workdir = tmp_path_factory.mktemp("online")
    config = tiny_online()
    generate.generate(config, workdir, show_progress=False, log=lambda _: None)
    return config, workdir
