"""Benchmarks: the records and the benchmark file, the FFT floor, and the benchmark groups that
`make bench` runs (experiments/benchmark.py), one module each: solver, score, samplers, latent,
coupled. Public names, imported on first use:

    from closurejax.benchmarks import BenchRecord, fft_floor, write_records, format_table

Each group module also holds `GROUPS` ({name: group}) and `CONFIGS` ({name: the study configs it
measures}); the timer `time_fn` is `closurejax.timing`'s.
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "records": (
            "BenchRecord",
            "device_description",
            "format_table",
            "load_records",
            "record",
            "write_records",
        ),
        "floor": ("fft_floor",),
        "solver": ("solver_benchmarks",),
        "score": ("score_benchmarks",),
        "samplers": ("sampler_accuracy_benchmarks",),
        "latent": ("latent_benchmarks",),
        "coupled": ("coupled_benchmarks",),
    },
)
