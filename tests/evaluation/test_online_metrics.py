"""A-posteriori metrics over time against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from closurejax.evaluation import online_metrics


def test_metrics_of_a_scaled_ensemble() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(3, 16, 16))
    scales = np.array([1.1, 0.8])[:, None, None, None]
    ens = ref[None] * scales  # member m = (1 + e_m) · reference
    m = online_metrics.over_time(ens, ref)
    np.testing.assert_allclose(m["member_relative_error"], [[0.1] * 3, [0.2] * 3], rtol=1e-5)
    np.testing.assert_allclose(m["relative_error_mean_member"], [0.15] * 3, rtol=1e-5)
    np.testing.assert_allclose(m["ensemble_mean_relative_error"], [0.05] * 3, rtol=1e-5)
    np.testing.assert_allclose(
        m["ensemble_mean_mse"], np.mean((0.05 * ref) ** 2, axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        m["enstrophy"], 0.5 * np.mean(ref**2, axis=(1, 2)) * (1.21 + 0.64) / 2, rtol=1e-5
    )
    assert len(m["spread"]) == len(m["crps"]) == len(m["spread_skill"]) == 3


def test_undefined_values_are_none_and_summaries_pick_the_nearest_time() -> None:
    ref = np.ones((2, 4, 4))
    ens = np.stack([ref, ref])  # identical: spread/skill = 0/0
    m = online_metrics.over_time(ens, ref)
    assert m["spread_skill"] == [None, None]
    assert m["ensemble_mean_relative_error"] == [0.0, 0.0]
    s = online_metrics.summary_at(
        {"a": [1.0, 2.0, 3.0], "nested": [[1.0]]}, [0.0, 0.5, 1.0], [0.4, 1.0]
    )
    assert s == {"a": {"t=0.4": 2.0, "t=1": 3.0}}


def test_single_member_and_shape_errors() -> None:
    ref = np.ones((2, 4, 4))
    m = online_metrics.over_time(ref[None] * 2, ref)
    assert "spread" not in m and m["ensemble_mean_relative_error"] == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"\[M, S, n, n\]"):
        online_metrics.over_time(ref, ref)
    spectra = online_metrics.spectra_at(ref[None], ref, [1])
    assert np.asarray(spectra["reference"]).shape == (1, 3)
    np.testing.assert_allclose(spectra["ensemble"], spectra["reference"])
