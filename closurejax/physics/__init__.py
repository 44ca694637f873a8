"""The PDE and everything the solver needs: the 2-D stochastic vorticity equation on jax-cfd's
spectral steppers (jax-cfd stays behind this package), forcings, initial conditions, filters and
the closure targets. Public names, imported on first use:

    from closurejax.physics import FlowParams, make_solver, gaussian_random_field, advance
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "navier_stokes": (
            "CLOSURES",
            "STEPPERS",
            "FlowParams",
            "Solver",
            "State",
            "StepCost",
            "advance",
            "make_solver",
            "map_members",
            "members_per_slice",
            "rollout",
            "step_key",
        ),
        "grid": ("SpectralGrid", "white_noise_hat"),
        "initial_conditions": ("gaussian_random_field",),
        "closures": ("exact_closure", "smagorinsky"),
        "filters": ("apply_filter", "coarse_grain"),
    },
)
