"""Tests for closurejax.keys (cache-key digests) and config_section.as_dict."""

from __future__ import annotations

import hashlib
import json

import ml_collections

from closurejax import keys
from closurejax.config_section import as_dict


def test_digest_is_the_sha256_of_the_sorted_json() -> None:
    value = {"b": [1, 2.5], "a": {"y": "s", "x": None}}
    expected = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    assert keys.digest(value) == expected  # the formula earlier cached results were keyed by
    assert keys.digest({"a": {"x": None, "y": "s"}, "b": [1, 2.5]}) == expected  # key order
    assert keys.digest({"a": {"y": "s", "x": None}, "b": (1, 2.5)}) == expected  # tuple = list


def test_digest_changes_with_any_value_and_writes_other_leaves_as_str() -> None:
    base = {"model": {"width": 20, "modes": 8}}
    assert keys.digest(base) != keys.digest({"model": {"width": 21, "modes": 8}})
    assert keys.digest(base) != keys.digest({"model": {"width": 20.0 + 1e-9, "modes": 8}})
    assert keys.digest({"p": object}) == keys.digest({"p": str(object)})


def test_as_dict_is_a_copy_the_caller_may_change() -> None:
    plain = {"model": {"conditions": ("omega",), "width": 20}}
    copy = as_dict(plain)
    copy["model"]["width"] = 99
    assert plain["model"]["width"] == 20  # deep: the nested section is not shared
    config = ml_collections.ConfigDict(plain)
    out = as_dict(config)
    assert type(out) is dict and type(out["model"]) is dict
    assert out == {"model": {"conditions": ("omega",), "width": 20}}
    out["model"]["width"] = 1
    assert config.model.width == 20
