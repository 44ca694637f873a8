"""Score-based diffusion: SDEs, time schedules, losses, samplers, and the closure models built
from a config (physical space: `ClosureModel`; paper B's latent model: `LatentDiffusionModel`;
the table of kinds, `KINDS`, and their common interface, `ClosureModelProtocol`).
Public names, imported on first use:

    from closurejax.diffusion import SamplerConfig, VESDE, ClosureModel
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "sde": ("SDE", "VESDE", "VPSDE"),
        "schedules": ("get_schedule",),
        "losses": ("dsm_loss",),
        "samplers": ("SAMPLERS", "SamplerConfig", "get_sampler"),
        "conditional": ("ClosureModel", "sampler_from_config"),
        "latent_model": ("LatentDiffusionModel",),
        "kinds": ("KINDS", "Kind", "ClosureModelProtocol"),
    },
)
