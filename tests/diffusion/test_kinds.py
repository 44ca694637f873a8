"""Tests for closurejax.diffusion.kinds: the one table of closure-model kinds and the builder.

Models are built from the paper configs on a 16² grid and their parameters shaped with
`jax.eval_shape` only (no compile): the table's facts are checked against what each built model
does, so a row that disagreed with its model class would fail here.
"""

from __future__ import annotations

import jax
import pytest

from closurejax.diffusion import conditional, kinds, latent_model
from closurejax.models import regression
from closurejax.simulation import sources
from closurejax.training import run
from experiments.configs import paper_a_h, paper_b_lcdm_joint

N = 16
STATS = {"target": {"mean": 0.3, "std": 2.0}, "omega": {"mean": -1.0, "std": 5.0}}


def config_of(kind: str) -> dict:
    if kind == "latent":
        config = paper_b_lcdm_joint.get_config().to_dict()
        config["latent"].update(
            ae_channels=(4, 8), ae_num_heads=2, ae_groups=2, width=8, modes=4, depth=1
        )
    else:
        config = paper_a_h.get_config().to_dict()
        config["model"].update(kind=kind, conditions=("omega",), width=8, modes=4, depth=1)
    config["data"]["coarse_size"] = N
    return config


@pytest.mark.parametrize("name", kinds.NAMES)
def test_every_kind_builds_a_model_with_the_common_interface(name: str) -> None:
    model = kinds.from_config(config_of(name), STATS)
    kind = kinds.get(name)
    assert isinstance(model, kinds.ClosureModelProtocol)
    assert model.kind == kind.name == name
    assert model.condition_names == ("omega",)
    assert callable(getattr(model, "sample" if kind.samples else "predict", None))
    shapes = jax.eval_shape(lambda k: model.init(k, N), jax.random.PRNGKey(0))
    assert jax.tree.leaves(shapes)  # parameters for an N² grid
    for section in kind.sections:  # the sections that define it reach the model
        assert section in config_of(name)


def test_the_table_agrees_with_the_model_classes() -> None:
    assert kinds.NAMES == ("score", "regression", "latent")
    assert kinds.SAMPLING == ("score", "latent")
    assert kinds.KINDS["latent"].build is latent_model.from_config
    assert kinds.KINDS["score"].build is conditional.from_config
    # only the latent model is tied to its grid (its autoencoders); the FNOs are not
    assert [k.name for k in kinds.KINDS.values() if k.grid_bound] == ["latent"]
    assert kinds.KINDS["regression"].build is regression.from_config
    # the regression baseline predicts: it has no sampler to run and no `sample`
    baseline = kinds.from_config(config_of("regression"), STATS)
    assert isinstance(baseline, regression.RegressionModel) and not hasattr(baseline, "sample")
    with pytest.raises(ValueError, match="builds kind 'score'"):
        conditional.from_config(config_of("regression"), STATS)
    with pytest.raises(ValueError, match="builds kind 'regression'"):
        regression.from_config(config_of("score"), STATS)


def test_the_online_sources_and_the_training_runs_read_the_table() -> None:
    assert sources.MODEL_KINDS == {
        "diffusion": "score",
        "regression": "regression",
        "latent": "latent",
    }
    assert sources.SOURCES == (*sources.PARAMETER_FREE, "diffusion", "regression", "latent")
    assert run.MODEL_KINDS == kinds.NAMES and run.model_from_config is kinds.from_config


@pytest.mark.parametrize("bad", ["diffusion", "Score", None, 3])
def test_an_unknown_kind_is_refused_in_one_line_naming_the_allowed(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^model\.kind=.* is invalid; allowed: \('score'") as e:
        kinds.get(bad)
    assert "\n" not in str(e.value)
    config = config_of("score")
    config["model"]["kind"] = bad
    with pytest.raises(ValueError, match="is invalid; allowed"):
        kinds.from_config(config, STATS)


def test_run_final_stage_names_the_two_stage_score_run_only() -> None:
    joint = config_of("latent")
    assert not run.is_two_stage(joint) and run.final_stage(joint) is None
    two = config_of("latent")
    two["latent"]["training_mode"] = "two_stage"
    assert run.is_two_stage(two) and run.final_stage(two) == "score"
    assert run.final_stage(config_of("score")) is None
    names = [run.default_run_name(c) for c in (joint, two, config_of("regression"))]
    assert names == ["latent", "latent_two_stage", "regression"]
    assert run.run_dir(two, "/w", stage="score").parent.name == run.default_run_name(two)
