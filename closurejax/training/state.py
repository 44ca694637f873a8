"""The train state: one pytree holding everything a training run needs to continue exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

__all__ = ["TrainState", "key_data"]


def key_data(key: jax.Array) -> jax.Array:
    """The raw ``uint32`` data of a PRNG key (typed ``jax.random.key`` or legacy ``PRNGKey``)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return jnp.asarray(key, dtype=jnp.uint32)


@struct.dataclass
class TrainState:
    """Parameters, their exponential moving average, optimiser state, step and base PRNG key.

    Attributes:
      step: int32 scalar, the number of optimiser updates applied so far.
      params: the model parameters (any pytree of float arrays).
      ema_params: exponential moving average of `params` (same tree), the weights to sample with.
      opt_state: the optax optimiser state.
      rng: raw ``uint32`` key data of the run's base key (stored raw so that checkpoints hold
        plain arrays); the key of step k is `key_at(k)` = ``fold_in(base key, k)``, so no key
        state advances and a resumed run draws the same keys as an uninterrupted one.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: optax.OptState
    rng: jax.Array

    @classmethod
    def create(
        cls,
        init_fn: Callable[[jax.Array], Any],
        optimizer: optax.GradientTransformation,
        key: jax.Array,
    ) -> TrainState:
        """A fresh state at step 0.

        Args:
          init_fn: ``key -> params``.
          optimizer: the optax transformation whose state to initialise.
          key: the run's key; split into the parameter-initialisation key and the base key.

        The EMA starts equal to the initial parameters.
        """
        init_key, base_key = jax.random.split(key)
        params = init_fn(init_key)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=jax.tree.map(jnp.array, params),
            opt_state=optimizer.init(params),
            rng=key_data(base_key),
        )

    def key_at(self, step: jax.Array | int) -> jax.Array:
        """The (typed) key of training step `step`: ``fold_in(base key, step)``."""
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), step)
