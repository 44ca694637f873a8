"""Networks: the conditional FNO score network and its deterministic baseline (with the
regression closure model built on it), its spectral convolution (two paths), noise-level
embeddings, paper B's autoencoder, field normalisation, batch slicing and FLOP counts. Public
names, imported on first use:

    from closurejax.models import ConditionalFNO, Autoencoder
"""

from closurejax._exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "fno": ("ConditionalFNO", "DeterministicFNO", "count_params"),
        "spectral": ("spectral_conv_dft", "spectral_conv_fft"),
        "embeddings": ("GaussianFourierProjection",),
        "autoencoder": ("Autoencoder",),
        "chunking": ("fold_vmap", "map_batch"),
        "flops": ("fno_forward_flops",),
        "regression": ("RegressionModel",),
    },
)
