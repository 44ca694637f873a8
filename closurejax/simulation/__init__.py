"""Online simulation: the coarse solver and a closure source fused into one jit-compiled step,
rollouts, ensembles sharded over devices, and closure sources built from checkpoints. Public
names, imported on first use:

    from closurejax.simulation import make_coupled_step, ensemble_rollout, NoClosure
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "coupled": (
            "ClosureSource",
            "CoupledCarry",
            "CoupledStep",
            "DiffusionClosure",
            "ExactClosure",
            "NoClosure",
            "ReferenceClosure",
            "RegressionClosure",
            "Smagorinsky",
            "ensemble_rollout",
            "initial_carry",
            "make_coupled_step",
            "rollout",
        ),
        "online": ("OnlineSpec", "coupled_run", "reference_run"),
        "sources": ("source_from_config",),
    },
)
