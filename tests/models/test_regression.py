"""Tests for closurejax.models.regression: the deterministic baseline predicts and is trained in
the units the module docstring states, on batch slices as in one call."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from closurejax.data.pipeline import PREVIOUS_TARGET
from closurejax.models import fno, regression
from experiments.configs.demo import get_config
from tests.arrays import assert_close, random_params

N, B = 16, 5
STATS = {
    "omega": {"mean": 0.5, "std": 3.0},
    "sparse_interpolated": {"mean": -0.2, "std": 0.5},
    "target": {"mean": 0.1, "std": 2.0},
}


def tiny(batch_chunk=None, normalize_target: bool = False) -> regression.RegressionModel:
    config = get_config().to_dict()
    config["model"].update(width=4, modes=2, depth=1, kind="regression", batch_chunk=batch_chunk)
    config["diffusion"]["normalize_target"] = normalize_target
    return regression.from_config(config, STATS)


def fields(seed: int) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        n: STATS[n]["mean"] + STATS[n]["std"] * jax.random.normal(k, (B, N, N))
        for n, k in zip(STATS, keys, strict=True)
    }


@pytest.fixture(scope="module")
def params():
    return random_params(tiny(), N)


def test_predict_standardises_the_conditions_and_returns_physical_units(params) -> None:
    model = tiny()
    assert model.kind == "regression" and isinstance(model.network, fno.DeterministicFNO)
    assert model.condition_names == ("omega", "sparse_interpolated")
    batch = fields(1)
    cond = {n: batch[n] for n in model.condition_names}
    normalised = {n: (v - STATS[n]["mean"]) / STATS[n]["std"] for n, v in cond.items()}
    raw = model.network.apply(params, normalised)
    assert_close(model.predict(params, cond), raw)  # the target is kept in physical units
    scaled = tiny(normalize_target=True)
    assert_close(scaled.predict(params, cond), raw * 2.0 + 0.1)  # … or standardised and mapped back


def test_loss_is_the_batch_mean_of_the_summed_squared_error(params) -> None:
    batch = fields(2)
    for model, std in ((tiny(), 1.0), (tiny(normalize_target=True), 2.0)):
        pred = model.predict(params, {n: batch[n] for n in model.condition_names})
        # physical target units, or standardised ones (÷ the target's std)
        expected = jnp.mean(jnp.sum(((pred - batch["target"]) / std) ** 2, axis=(-2, -1)))
        value, metrics = model.loss(params, batch, None)
        assert_close(value, expected, 1e-5)
        assert metrics == {}


def test_predictions_and_loss_on_slices_equal_one_call(params) -> None:
    whole, sliced = tiny(None), tiny(3)  # slices of 3 and a remainder of 2
    assert sliced.chunk_size(N) == 3
    batch = fields(3)
    cond = {n: batch[n] for n in whole.condition_names}
    assert_close(sliced.predict(params, cond), whole.predict(params, cond))
    assert_close(sliced.loss(params, batch)[0], whole.loss(params, batch)[0])


def test_the_previous_snapshot_condition_shares_the_targets_scale() -> None:
    config = get_config().to_dict()
    config["model"].update(width=4, modes=2, depth=1, kind="regression")
    config["model"]["conditions"] = ("omega", PREVIOUS_TARGET)
    model = regression.from_config(config, STATS)
    assert model.stats[PREVIOUS_TARGET] == STATS["target"]


def test_bad_configs_are_refused_in_one_line() -> None:
    config = get_config().to_dict()
    config["model"].update(kind="regression", conditions=())
    with pytest.raises(ValueError, match="model.conditions must name at least one"):
        regression.from_config(config, STATS)
    config["model"].update(conditions=("omega",), kind="score")
    with pytest.raises(ValueError, match="builds kind 'regression'"):
        regression.from_config(config, STATS)
    config["model"]["kind"] = "regression"
    with pytest.raises(ValueError, match=r"statistics missing for \['omega'\]"):
        regression.from_config(config, {"target": STATS["target"]})
