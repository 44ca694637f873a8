"""The config schema (closurejax.config): every `SamplerConfig` field is a `sampler` config field
and reaches the sampler built from it; the study configs build the samplers they built before."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest

from closurejax.config import base_config
from closurejax.diffusion import conditional
from closurejax.diffusion.samplers import SamplerConfig
from closurejax.evaluation import study
from closurejax.training import budget

# a valid value other than base_config()'s for every SamplerConfig field
NON_DEFAULT = {
    "name": "heun_ode",
    "num_steps": 3,
    "t_min": 2e-3,
    "t_max": 0.4,
    "schedule": "uniform",
    "rho": 5.0,
    "final_zero": False,
    "prior_data_std": 1.0,
    "predictor": "euler_maruyama",
    "corrector_steps": 2,
    "snr": 0.1,
    "langevin_norm": "sample",
    "time_variable": "sde_time",
}
# the fields the sampler section had before every SamplerConfig field was one
FIRST_FIELDS = ("name", "num_steps", "t_min", "t_max", "rho", "snr", "corrector_steps")


def test_every_sampler_field_is_a_config_field_with_its_default() -> None:
    section = base_config().sampler.to_dict()
    fields = [f.name for f in dataclasses.fields(SamplerConfig)]
    assert sorted(section) == sorted(fields)
    assert set(NON_DEFAULT) == set(fields)
    defaults = SamplerConfig()
    for name in fields:
        if name not in ("t_min", "t_max"):  # the papers' window, not the SDE's
            assert section[name] == getattr(defaults, name), name
    assert conditional.sampler_from_config(section) == SamplerConfig(t_min=1e-3, t_max=0.1)


@pytest.mark.parametrize("field", sorted(NON_DEFAULT))
def test_a_non_default_value_of_every_field_reaches_the_sampler(field: str) -> None:
    config = base_config()
    setattr(config.sampler, field, NON_DEFAULT[field])
    before = conditional.sampler_from_config(base_config().sampler)
    built = conditional.sampler_from_config(config.sampler)
    assert getattr(built, field) == NON_DEFAULT[field] != getattr(before, field)
    assert built == dataclasses.replace(before, **{field: NON_DEFAULT[field]})


def test_study_configs_build_the_samplers_of_their_first_fields() -> None:
    """Every study in experiments/configs builds the sampler it built from the first seven
    fields alone (the added fields are at SamplerConfig's defaults), and a section without the
    added fields (saved before them) builds the same sampler."""
    configs = importlib.import_module("experiments.configs")
    names = [m.name for m in pkgutil.iter_modules(configs.__path__)]
    assert "paper_b" in names and "base" not in names
    for name in names:
        section = importlib.import_module(f"experiments.configs.{name}").get_config().sampler
        first = {k: section[k] for k in FIRST_FIELDS}
        built = conditional.sampler_from_config(section)
        assert built == SamplerConfig(**first) == conditional.sampler_from_config(first), name


def test_a_non_bool_final_zero_is_refused() -> None:
    section = {**base_config().sampler.to_dict(), "final_zero": "False"}
    with pytest.raises(ValueError, match=r"sampler.final_zero='False' is invalid"):
        conditional.sampler_from_config(section)


def test_sampler_cache_identity_keeps_results_made_before_the_later_fields():
    """A cached result keyed with the seven-field sampler section of earlier versions matches the
    full section at the defaults; a non-default value of a later field is a new key."""
    section = base_config().sampler.to_dict()
    earlier = {k: section[k] for k in ("name", "num_steps", "t_min", "t_max", "rho", "snr")}
    earlier["corrector_steps"] = section["corrector_steps"]
    assert conditional.sampler_identity(section) == earlier
    assert conditional.sampler_identity(earlier) == earlier
    for name in ("schedule", "final_zero", "prior_data_std", "predictor", "langevin_norm"):
        changed = conditional.sampler_identity({**section, name: NON_DEFAULT[name]})
        assert changed == {**earlier, name: NON_DEFAULT[name]}
    changed = conditional.sampler_identity({**section, "time_variable": "sde_time"})
    assert changed["time_variable"] == "sde_time"


@pytest.mark.parametrize(
    "field, before, other", [("noise_input", "t", "c_noise"), ("loss_weighting", "sigma2", "edm")]
)
def test_diffusion_cache_identity_keeps_results_made_before_later_fields(
    tmp_path, field, before, other
):
    """A result cached before a later `diffusion` field existed (`noise_input`: the network fed
    t; `loss_weighting`: λ = σ²) keeps its key at the value it was made with; any other value is a
    new key, in the offline table's, the online sources' (through this function) and the training
    budget's keys."""
    section = base_config().diffusion.to_dict()
    earlier = {k: v for k, v in section.items() if k != field}
    assert section[field] == before
    assert conditional.diffusion_identity(section) == {
        k: v for k, v in earlier.items() if k not in ("noise_input", "loss_weighting")
    }
    assert conditional.diffusion_identity(earlier) == conditional.diffusion_identity(section)
    changed = conditional.diffusion_identity({**section, field: other})
    assert changed == {**conditional.diffusion_identity(section), field: other}
    config = base_config().to_dict()
    old = {**config, "diffusion": earlier}
    assert budget.plan_key(config, 60.0) == budget.plan_key(old, 60.0)
    new = {**config, "diffusion": {**section, field: other}}
    assert budget.plan_key(new, 60.0) != budget.plan_key(config, 60.0)
    offline = [study._offline_key(c, tmp_path) for c in (config, old, new)]  # no models yet
    assert offline[0] == offline[1] != offline[2]
