"""The field standardisation and condition checks every closure model shares."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.models import fields

STATS = {"omega": {"mean": 0.5, "std": 2.0}, "target": {"mean": -1.0, "std": 0.25}}


def test_normalise_and_denormalise_are_inverse_with_the_named_statistics() -> None:
    x = jnp.linspace(-3.0, 3.0, 2 * 4 * 4).reshape(2, 4, 4)
    mean, std = fields.scale(STATS, "omega")
    assert (mean, std) == (0.5, 2.0)
    z = fields.normalise(x, mean, std)
    np.testing.assert_allclose(z, (x - 0.5) / 2.0)
    np.testing.assert_allclose(fields.denormalise(z, mean, std), x, rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"field name 'sparse' has no statistics; fields: \['omega', 'target'\]"
    ):
        fields.scale(STATS, "sparse")


@pytest.mark.parametrize(
    ("cond", "message"),
    [
        (
            [1, 2],
            r"cond must be a mapping \{name: \[batch, n, n\]\} of \['omega', 'sparse'\], got list",
        ),
        (
            {"omega": jnp.zeros((2, 4, 4))},
            r"missing condition field\(s\) \['sparse'\].*got fields \['omega'\]",
        ),
        (
            {"omega": jnp.zeros((2, 4, 4)), "sparse": jnp.zeros((2, 4, 5))},
            r"condition 'sparse' must be \[batch, n, n\]",
        ),
        (
            {"omega": jnp.zeros((0, 4, 4)), "sparse": jnp.zeros((0, 4, 4))},
            r"condition 'omega' must be \[batch, n, n\], got shape \(0, 4, 4\)",
        ),
        (
            {"omega": jnp.zeros((2, 4, 4)), "sparse": jnp.zeros((3, 4, 4))},
            "all conditions must share one batch size and grid",
        ),
        (
            {"omega": jnp.zeros((2, 4, 4)), "sparse": jnp.full((2, 4, 4), jnp.nan)},
            "condition 'sparse' contains non-finite",
        ),
    ],
)
def test_bad_conditions_are_refused_in_one_line(cond, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        fields.check_conditions(cond, ("omega", "sparse"))
    assert "\n" not in str(error.value)


def test_check_conditions_returns_the_named_fields_in_model_order() -> None:
    cond = {"sparse": jnp.ones((2, 4, 4)), "omega": jnp.zeros((2, 4, 4)), "extra": jnp.ones(3)}
    out = fields.check_conditions(cond, ("omega", "sparse"))
    assert list(out) == ["omega", "sparse"] and out["sparse"] is cond["sparse"]
