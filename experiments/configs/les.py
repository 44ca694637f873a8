"""LES sub-grid target Π = F(u·∇ω) − ū·∇ω̄ (related code of paper A): ν = 1e-4, 256² DNS,
box filter 16×16 on the fine grid, subsampled 8× to 32², Smagorinsky (C_s = 0.16) as a
physics-based condition."""

from closurejax.config import base_config


def get_config():
    config = base_config()
    config.name = "les"
    config.physics.viscosity = 1e-4
    config.data.closure = "Pi"
    config.data.coarse_size = 32
    config.data.filter_name = "box"
    config.data.filter_width_points = 16
    config.data.zero_shot_sizes = ()
    config.model.conditions = ("omega", "sparse_interpolated", "smagorinsky")
    config.lock()
    return config
