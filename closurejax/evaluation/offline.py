"""Offline (a-priori) evaluation of closure models on a test split (arXiv 2408.02965's offline
table).

For each test snapshot, an ensemble of `m` closure samples conditioned on the snapshot's fields is
compared with the true closure: relative Frobenius error and MSE of single samples (averaged over
members) and of the ensemble mean, ensemble spread, CRPS and spread–skill ratio. The regression
baseline gets the same single-prediction errors. Zero-shot resolutions use the same parameters on
the `<name>_<size>` arrays of the zero-shot dataset.

Any model with `condition_names` and `sample(params, key, cond, sampler) -> [B, n, n]` (physical
units) is scored the same way: the physical-space `ClosureModel` (P-CDM) and paper B's latent
`LatentDiffusionModel` (L-CDM). For the latent model, `evaluate_reconstruction` adds the relative
Frobenius error and MSE of its two autoencoders, and `sample_cost` times one closure sample per
condition at the evaluation batch (compiled, median of repeats) for any of them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from closurejax.data import pipeline, store
from closurejax.diffusion import samplers
from closurejax.evaluation import metrics
from closurejax.models import regression
from closurejax.models.flops import xla_flops
from closurejax.timing import time_fn


class SamplingModel(Protocol):
    """What the offline scores need of a closure model (`ClosureModel`, `LatentDiffusionModel`)."""

    condition_names: tuple[str, ...]

    def sample(
        self,
        params: Any,
        key: jax.Array,
        cond: Mapping[str, jax.Array],
        sampler: samplers.SamplerConfig,
    ) -> jax.Array:
        """One closure sample per condition, ``[B, n, n]`` in physical units."""
        ...


def test_fields(
    data: store.Dataset, names: list[str], suffix: str = "", max_snapshots: int = 0
) -> dict[str, np.ndarray]:
    """Test-split fields `[N, n, n]` (trajectories × snapshots flattened), optionally thinned to
    `max_snapshots` evenly spaced samples (0 = all)."""
    arrays = {
        name: np.asarray(a).reshape(-1, *a.shape[-2:])
        for name, a in pipeline.trajectory_fields(data, "test", names, suffix).items()
    }
    total = len(next(iter(arrays.values())))
    if max_snapshots and max_snapshots < total:
        index = np.linspace(0, total - 1, max_snapshots).round().astype(int)
        arrays = {k: v[index] for k, v in arrays.items()}
    return arrays


def _summaries(per_snapshot: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) for k, v in per_snapshot.items()}


def evaluate_score_model(
    model: SamplingModel,
    params: Any,
    fields: Mapping[str, np.ndarray],
    sampler: samplers.SamplerConfig,
    ensemble_size: int,
    key: jax.Array,
    batch_size: int = 32,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scores of an ensemble of `ensemble_size` samples per snapshot; returns (summary means,
    one example {truth, samples [m, n, n], condition fields} for figures)."""
    if ensemble_size < 2:
        raise ValueError(f"evaluation.ensemble_size={ensemble_size} must be ≥ 2 (spread, CRPS)")

    @jax.jit
    def ensemble(keys: jax.Array, cond: dict[str, jax.Array]) -> jax.Array:
        return jax.vmap(lambda k: model.sample(params, k, cond, sampler))(keys)

    @jax.jit
    def scores(samples: jax.Array, truth: jax.Array) -> dict[str, jax.Array]:
        mean = jnp.mean(samples, axis=0)
        return {
            "rel_error_sample": jnp.mean(metrics.relative_error(samples, truth), axis=0),
            "rel_error_mean": metrics.relative_error(mean, truth),
            "mse_sample": jnp.mean(metrics.mse(samples, truth), axis=0),
            "mse_mean": metrics.mse(mean, truth),
            "spread": metrics.ensemble_spread(samples),
            "crps": metrics.crps(samples, truth),
            "spread_skill": metrics.spread_skill_ratio(samples, truth),
        }

    truth_all = fields["target"]
    total = len(truth_all)
    collected: dict[str, list[np.ndarray]] = {}
    example: dict[str, np.ndarray] = {}
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        cond = {n: jnp.asarray(fields[n][start:stop]) for n in model.condition_names}
        keys = jax.random.split(jax.random.fold_in(key, start), ensemble_size)
        samples = ensemble(keys, cond)
        for k, v in scores(samples, jnp.asarray(truth_all[start:stop])).items():
            collected.setdefault(k, []).append(np.asarray(v))
        if start == 0:
            example = {"truth": truth_all[0], "samples": np.asarray(samples[:, 0])}
            example.update({n: fields[n][0] for n in model.condition_names})
    summary = _summaries({k: np.concatenate(v) for k, v in collected.items()})
    summary.update(num_snapshots=total, ensemble_size=ensemble_size, nfe=sampler.nfe)
    return summary, example


def evaluate_regression_model(
    model: regression.RegressionModel,
    params: Any,
    fields: Mapping[str, np.ndarray],
    batch_size: int = 64,
) -> dict[str, float]:
    """Relative error and MSE of the deterministic baseline's predictions."""
    predict = jax.jit(lambda cond: model.predict(params, cond))
    rel, mse = [], []
    truth_all = fields["target"]
    for start in range(0, len(truth_all), batch_size):
        stop = min(start + batch_size, len(truth_all))
        cond = {n: jnp.asarray(fields[n][start:stop]) for n in model.condition_names}
        pred = predict(cond)
        truth = jnp.asarray(truth_all[start:stop])
        rel.append(np.asarray(metrics.relative_error(pred, truth)))
        mse.append(np.asarray(metrics.mse(pred, truth)))
    return {
        "rel_error": float(np.mean(np.concatenate(rel))),
        "mse": float(np.mean(np.concatenate(mse))),
        "num_snapshots": len(truth_all),
    }


def evaluate_denoiser(
    model: Any,
    params: Any,
    fields: Mapping[str, np.ndarray],
    times: Any,
    key: jax.Array,
    batch_size: int = 32,
) -> dict[str, list[float]]:
    """The score model's denoiser error per noise level: where a sampler's error comes from.

    For each time ``t`` and test snapshot, noise the true closure ``x_t = α(t) x_0 + σ(t) z`` and
    read the model's denoiser off its score (Tweedie: ``D = (x_t + σ² score(x_t, t)) / α``, an
    estimate of ``E[x_0 | x_t, conditions]``). Its relative error against ``x_0`` (physical
    units) is averaged over snapshots. At noise levels far above the conditional spread ``D`` is
    the model's estimate of the conditional mean ``E[x_0 | conditions]`` (what an infinite
    ensemble of a model with exact scores would average to); at the sampler's smallest ``t`` it
    is what the sampler's final noiseless step returns.

    Args:
        model: a physical-space score model (`closurejax.diffusion.conditional.ClosureModel`:
            ``encode``, ``score_fn``, ``sde``, ``normalise``, ``denormalise``).
        params: its parameters.
        fields: test fields ``[N, n, n]``: its conditions and ``"target"`` (`test_fields`).
        times: diffusion times ``[T]``, each in ``(0, 1]``.
        key: PRNG key of the noise (the same key gives the same noise at every ``t``).
        batch_size: snapshots per call.

    Returns:
        ``{"t": [T], "sigma": [T] (σ(t)/α(t)), "rel_error": [T]}``.
    """
    times = np.asarray(times, dtype=float).reshape(-1)
    if times.size == 0 or not np.all((times > 0) & (times <= 1)):
        raise ValueError(f"times must be a non-empty list of values in (0, 1], got {times}")

    @jax.jit
    def errors(cond: dict[str, jax.Array], truth: jax.Array, z: jax.Array, t: jax.Array):
        features = model.encode(params, cond)
        x0 = model.normalise("target", truth)
        tb = jnp.full(x0.shape[:1], t)
        alpha, sigma = model.sde.marginal(tb)
        alpha, sigma = alpha[:, None, None], sigma[:, None, None]
        x_t = alpha * x0 + sigma * z
        denoised = (x_t + sigma**2 * model.score_fn(params, features)(x_t, tb)) / alpha
        return metrics.relative_error(model.denormalise("target", denoised), truth)

    truth_all = fields["target"]
    per_time = []
    for t in times:
        rel = []
        for start in range(0, len(truth_all), batch_size):
            stop = min(start + batch_size, len(truth_all))
            cond = {n: jnp.asarray(fields[n][start:stop]) for n in model.condition_names}
            truth = jnp.asarray(truth_all[start:stop])
            z = jax.random.normal(jax.random.fold_in(key, start), truth.shape, truth.dtype)
            rel.append(np.asarray(errors(cond, truth, z, jnp.asarray(t, truth.dtype))))
        per_time.append(float(np.mean(np.concatenate(rel))))
    noise = np.asarray(model.sde.noise_level(jnp.asarray(times)))
    return {"t": times.tolist(), "sigma": noise.tolist(), "rel_error": per_time}


def evaluate_reconstruction(
    model: Any,
    params: Any,
    fields: Mapping[str, np.ndarray],
    names: tuple[str, ...] = ("target", "omega"),
    batch_size: int = 64,
) -> dict[str, dict[str, float]]:
    """Reconstruction errors of a latent model's autoencoders on test fields.

    ``model.reconstruct(params, name, field [B, n, n]) -> [B, n, n]`` (physical units, e.g.
    `LatentDiffusionModel.reconstruct`) is compared with the field: per snapshot the relative
    Frobenius error ``||x_hat - x||_F / ||x||_F`` and the MSE, averaged over the snapshots.

    Returns:
        ``{name: {"rel_error", "mse", "num_snapshots"}}`` for each of `names`.
    """
    reconstruct = jax.jit(model.reconstruct, static_argnums=1)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        truth_all = fields[name]
        rel, mse = [], []
        for start in range(0, len(truth_all), batch_size):
            truth = jnp.asarray(truth_all[start : start + batch_size])
            recon = reconstruct(params, name, truth)
            rel.append(np.asarray(metrics.relative_error(recon, truth)))
            mse.append(np.asarray(metrics.mse(recon, truth)))
        out[name] = {
            "rel_error": float(np.mean(np.concatenate(rel))),
            "mse": float(np.mean(np.concatenate(mse))),
            "num_snapshots": len(truth_all),
        }
    return out


def sample_cost(
    model: SamplingModel,
    params: Any,
    fields: Mapping[str, np.ndarray],
    sampler: samplers.SamplerConfig,
    key: jax.Array,
    batch_size: int = 32,
    repeats: int = 3,
) -> dict[str, float]:
    """Wall-clock cost of one closure sample per condition at the evaluation batch.

    Times the jit-compiled ``model.sample(params, key, cond, sampler)`` on the first
    ``min(batch_size, N)`` test conditions: the first call (compilation + one run) and the median
    of `repeats` further calls.

    Returns:
        ``{"batch", "seconds_per_call", "seconds_per_sample" (= per call / batch),
        "first_call_seconds", "nfe"}``.
    """
    batch = min(batch_size, len(fields[model.condition_names[0]]))
    cond = {n: jnp.asarray(fields[n][:batch]) for n in model.condition_names}
    sample = jax.jit(lambda p, k, c: model.sample(p, k, c, sampler))
    start = time.perf_counter()
    jax.block_until_ready(sample(params, key, cond))
    first = time.perf_counter() - start
    seconds = time_fn(sample, params, key, cond, warmup=0, repeats=repeats)["median"]
    return {
        "batch": batch,
        "seconds_per_call": seconds,
        "seconds_per_sample": seconds / batch,
        "first_call_seconds": first,
        "nfe": sampler.nfe,
    }


def sample_flops(
    model: Any, params: Any, cond: Mapping[str, jax.Array], sampler: samplers.SamplerConfig
) -> float:
    """XLA's FLOP count of one closure sample per condition of `cond` (`[B, n, n]` fields).

    A sampler is a loop, whose body XLA counts once, so the sample is counted as its parts, each
    loop-free and on the unsliced model (`batch_chunk=None`: a batch-sliced network is a loop
    too): the condition encoding, plus NFE score evaluations, plus for a latent model
    (`LatentDiffusionModel`) the encoding of ω before and the decoding of the latent sample
    after. The sampler's own elementwise arithmetic is not counted. NaN where the backend
    gives no count.
    """
    flat = dataclasses.replace(model, batch_chunk=None)
    first = next(iter(cond.values()))
    batch = first.shape[0]
    t = jnp.full((batch,), sampler.t_max, first.dtype)
    if hasattr(flat, "decode"):  # the latent model: encode ω, sample latents, decode H

        def features(p: Any, c: Mapping[str, jax.Array]) -> jax.Array:
            return flat.condition_features(p["score"], flat.encode(p, "omega", c["omega"]))

        f = jax.jit(features)(params, cond)
        m = flat.latent_size(first.shape[-1])
        z = jnp.zeros((batch, m, m), first.dtype)
        encode = xla_flops(features, params, cond)
        step = xla_flops(lambda p, z, t, f: flat.score_fn(p["score"], f)(z, t), params, z, t, f)
        decode = xla_flops(lambda p, z: flat.decode(p, "target", z), params, z)
        return encode + sampler.nfe * step + decode
    f = jax.jit(flat.encode)(params, cond)
    x = jnp.zeros_like(first)
    encode = xla_flops(flat.encode, params, cond)
    step = xla_flops(lambda p, x, t, f: flat.score_fn(p, f)(x, t), params, x, t, f)
    return encode + sampler.nfe * step
