"""Closure datasets: batched DNS → coarse fields, targets and sparse measurements; the on-disk
store (its format and reader) and its writer; batches for training. Public names, imported on
first use:

    from closurejax.data import generate, open_dataset
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "generate": ("DataSpec", "Study", "generate"),
        "store": ("Dataset", "DatasetError", "open_dataset"),
        "writer": ("DatasetWriter",),
        "sparse": ("encode",),
        "pipeline": ("Batches",),
    },
)
