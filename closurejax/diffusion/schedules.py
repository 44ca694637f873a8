"""Time discretisations for reverse-time samplers.

Every schedule returns a decreasing ``[num_steps + 1]`` array of SDE times ``t_0 > t_1 > ... >
t_N`` (``N = num_steps``) that a sampler walks through in ``N`` steps ``t_i -> t_{i+1}``:

* ``final_zero=True`` (default; the papers' convention, arXiv 2408.02965,
  "Diffusion": "10 steps, t from 0.1 or 0.4 down to 1e-3, then a last noiseless step to 0"):
  ``N`` points spaced between ``t_0 = t_max`` and ``t_{N-1} = t_min``, then ``t_N = 0``. The last
  step ``t_min -> 0`` uses the score at ``t_min`` only (the score at ``t = 0`` is undefined), so a
  sampler with one score evaluation per step makes exactly ``N`` of them. ``num_steps = 1`` gives
  ``[t_max, 0]``.
* ``final_zero=False``: ``N + 1`` points spaced between ``t_0 = t_max`` and ``t_N = t_min``
  (Song et al. 2021's convention).

Spacings, with ``M`` points between ``t_max`` and ``t_min`` (``M = N`` or ``N + 1``) and
``i = 0, ..., M - 1``:

* ``karras`` (Karras et al. 2022, eq. 5): uniform in ``noise_level^{1/rho}``,
  ``s_i = (s_max^{1/rho} + i / (M - 1) (s_min^{1/rho} - s_max^{1/rho}))^rho``, with
  ``s = sde.noise_level(t) = sigma(t) / alpha(t)`` (the VE ``sigma(t)``), mapped back to SDE time by
  ``t_i = sde.t_from_noise_level(s_i)``. ``rho = 7`` (the papers) packs steps near ``t_min``.
* ``uniform``: uniform in ``t`` (Song et al. 2021's Euler–Maruyama grid).
* ``log_sigma``: uniform in ``log noise_level``, i.e. uniform in log-SNR ``lambda`` (the grid of
  Lu et al. 2022 for DPM-Solver); it equals ``karras`` in the limit ``rho -> inf``.

The end points are set exactly to ``t_max`` and ``t_min`` (no round-off from the ``t <-> sigma``
maps). Arrays have the default float dtype (float64 under ``jax_enable_x64``).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp

from closurejax.diffusion.sde import SDE

__all__ = ["SCHEDULES", "get_schedule", "karras", "log_sigma", "uniform"]

Array = jax.Array


def _validate(num_steps: int, t_min: float, t_max: float) -> None:
    """Check ``num_steps >= 1`` (a Python int) and, for Python numbers, ``0 < t_min < t_max``."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral):
        raise ValueError(f"num_steps must be a Python int >= 1, got {num_steps!r}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if isinstance(t_min, numbers.Real) and isinstance(t_max, numbers.Real):
        if not 0.0 < t_min < t_max:
            raise ValueError(f"schedules need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")


def _finish(
    fractions_to_times: Callable[[Array], Array],
    num_steps: int,
    t_min: float,
    t_max: float,
    final_zero: bool,
) -> Array:
    """Build the ``[num_steps + 1]`` grid from a map ``u in [0, 1] -> t`` (``t_max`` at 0)."""
    dtype = jnp.result_type(float)
    num_points = num_steps if final_zero else num_steps + 1
    u = jnp.arange(num_points, dtype=dtype) / max(num_points - 1, 1)
    times = fractions_to_times(u).astype(dtype)
    times = times.at[0].set(t_max)
    if num_points > 1:
        times = times.at[-1].set(t_min)
    if final_zero:
        times = jnp.concatenate([times, jnp.zeros((1,), dtype)])
    return times


def karras(
    num_steps: int,
    t_min: float,
    t_max: float,
    sde: SDE,
    rho: float = 7.0,
    final_zero: bool = True,
) -> Array:
    """Karras et al. (2022) rho-spacing in the noise level, mapped back to SDE time.

    Args:
        num_steps: number of sampler steps ``N >= 1``.
        t_min, t_max: smallest positive time and starting time, ``0 < t_min < t_max``.
        sde: gives ``noise_level(t) = sigma(t) / alpha(t)`` and its inverse.
        rho: spacing exponent (7 in the papers and in Karras et al.).
        final_zero: append ``t = 0`` (module docstring).

    Returns:
        ``[num_steps + 1]`` decreasing times.
    """
    _validate(num_steps, t_min, t_max)
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho!r}")
    s_max = sde.noise_level(t_max) ** (1.0 / rho)
    s_min = sde.noise_level(t_min) ** (1.0 / rho)
    return _finish(
        lambda u: sde.t_from_noise_level((s_max + u * (s_min - s_max)) ** rho),
        num_steps,
        t_min,
        t_max,
        final_zero,
    )


def uniform(
    num_steps: int,
    t_min: float,
    t_max: float,
    sde: SDE | None = None,
    final_zero: bool = True,
) -> Array:
    """Uniform spacing in SDE time ``t`` (``sde`` is unused; accepted for a common signature).

    Returns ``[num_steps + 1]`` decreasing times (module docstring).
    """
    del sde
    _validate(num_steps, t_min, t_max)
    return _finish(lambda u: t_max + u * (t_min - t_max), num_steps, t_min, t_max, final_zero)


def log_sigma(
    num_steps: int,
    t_min: float,
    t_max: float,
    sde: SDE,
    final_zero: bool = True,
) -> Array:
    """Uniform spacing in ``log(sigma / alpha) = -lambda`` (uniform log-SNR, Lu et al. 2022).

    Returns ``[num_steps + 1]`` decreasing times (module docstring).
    """
    _validate(num_steps, t_min, t_max)
    lam_max_t = sde.log_snr(t_max)
    lam_min_t = sde.log_snr(t_min)
    return _finish(
        lambda u: sde.t_from_log_snr(lam_max_t + u * (lam_min_t - lam_max_t)),
        num_steps,
        t_min,
        t_max,
        final_zero,
    )


SCHEDULES: dict[str, Callable[..., Array]] = {
    "karras": karras,
    "uniform": uniform,
    "log_sigma": log_sigma,
}
"""Schedules by name; each is called as ``f(num_steps, t_min, t_max, sde, final_zero=...)``."""


def get_schedule(name: str) -> Callable[..., Array]:
    """The schedule called ``name`` (one of ``SCHEDULES``); ``ValueError`` for an unknown name."""
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
