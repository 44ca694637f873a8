"""A-posteriori metrics of an online ensemble against its reference trajectory (arXiv 2408.02965,
"Online use": relative Frobenius error of vorticity, MSE, max error, energy spectrum; plus the
ensemble diagnostics of the offline evaluation — spread, CRPS, spread–skill).

Inputs: `ensemble` `[M, S, n, n]` (members × snapshots) and `reference` `[S, n, n]`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from closurejax.evaluation import metrics

__all__ = ["over_time", "spectra_at", "summary_at"]


def over_time(ensemble: np.ndarray, reference: np.ndarray, length: float = 1.0) -> dict:
    """Metrics per snapshot (lists of floats, JSON-ready).

    Returns:
      member_relative_error `[M][S]`, relative_error_mean_member `[S]` (mean over members of
      their errors), ensemble_mean_relative_error `[S]`, ensemble_mean_mse `[S]`,
      ensemble_mean_max_error `[S]` (max |mean − ref|), enstrophy `[S]` (member mean),
      reference_enstrophy `[S]`, energy `[S]`, reference_energy `[S]`, and for M ≥ 2
      spread `[S]`, crps `[S]`, spread_skill `[S]`. Undefined values (0/0: the spread–skill
      ratio where the ensemble equals the reference) are None.
    """
    ensemble = jnp.asarray(ensemble)
    reference = jnp.asarray(reference)
    if ensemble.ndim != 4 or reference.shape != ensemble.shape[1:]:
        raise ValueError(
            f"ensemble must be [M, S, n, n] and reference [S, n, n]; got {ensemble.shape} and "
            f"{reference.shape}"
        )
    mean = jnp.mean(ensemble, axis=0)
    member_error = metrics.relative_error(ensemble, reference[None])
    out = {
        "member_relative_error": member_error,
        "relative_error_mean_member": jnp.mean(member_error, axis=0),
        "ensemble_mean_relative_error": metrics.relative_error(mean, reference),
        "ensemble_mean_mse": metrics.mse(mean, reference),
        "ensemble_mean_max_error": jnp.max(jnp.abs(mean - reference), axis=(-2, -1)),
        "enstrophy": jnp.mean(metrics.enstrophy(ensemble), axis=0),
        "reference_enstrophy": metrics.enstrophy(reference),
        "energy": jnp.mean(metrics.energy(ensemble, length), axis=0),
        "reference_energy": metrics.energy(reference, length),
    }
    if ensemble.shape[0] >= 2:
        out["spread"] = metrics.ensemble_spread(ensemble)
        out["crps"] = metrics.crps(ensemble, reference)
        out["spread_skill"] = metrics.spread_skill_ratio(ensemble, reference)
    return {k: _jsonable(np.asarray(v, np.float64)) for k, v in out.items()}


def _jsonable(values: np.ndarray) -> list:
    """Nested lists with NaN/inf as None (strict JSON; e.g. spread–skill at t_start, 0/0)."""
    return np.where(np.isfinite(values), values, None).tolist()


def spectra_at(
    ensemble: np.ndarray, reference: np.ndarray, indices: Sequence[int], length: float = 1.0
) -> dict[str, list]:
    """Energy spectra `[len(indices)][n/2+1]` of the reference and the member-mean spectrum of
    the ensemble at the given snapshot indices."""
    idx = np.asarray(indices, int)
    ens = jnp.asarray(ensemble)[:, idx]
    return {
        "reference": np.asarray(
            metrics.energy_spectrum(jnp.asarray(reference)[idx], length)
        ).tolist(),
        "ensemble": np.asarray(jnp.mean(metrics.energy_spectrum(ens, length), axis=0)).tolist(),
    }


def summary_at(
    series: Mapping[str, Sequence], times: Sequence[float], at: Sequence[float]
) -> dict[str, dict[str, float]]:
    """`{metric: {"t=35": value, …}}` of the per-snapshot scalar series at the times `at` (the
    nearest snapshot)."""
    times = np.asarray(times, np.float64)
    out: dict[str, dict[str, float]] = {}
    for name, values in series.items():
        values = np.asarray(values, np.float64)
        if values.ndim != 1:
            continue
        out[name] = {f"t={t:g}": float(values[int(np.argmin(np.abs(times - t)))]) for t in at}
    return out
