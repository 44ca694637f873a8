"""Evaluation: metrics, the offline and online tests of a study, a whole study in one call, and
figures (the benchmarks are `closurejax.benchmarks`). Public names, imported on first use:

    from closurejax.evaluation import run_study, run_offline, run_online, run_frontier
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "metrics": (
            "crps",
            "energy_spectrum",
            "ensemble_spread",
            "mse",
            "relative_error",
            "spread_skill_ratio",
        ),
        "frontier": ("export_frontier", "run_frontier"),
        "offline_study": ("run_offline",),
        "online_study": ("run_online",),
        "study": ("export_results", "load_weights", "run_study"),
    },
)
