"""The public API: every re-exported name is the object of its module, and importing a
subpackage imports none of its modules until a name is used."""

from __future__ import annotations

import importlib

import pytest

from tests.processes import run_python

PACKAGES = ("physics", "data", "models", "diffusion", "training", "simulation", "evaluation")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_is_its_modules_object(name: str) -> None:
    package = importlib.import_module(f"closurejax.{name}")
    assert package.__all__ and sorted(package.__all__) == package.__all__
    assert dir(package) == package.__all__
    for attr in package.__all__:
        value = getattr(package, attr)
        module = getattr(value, "__module__", None)
        if module is not None and module.startswith("closurejax."):  # classes and functions
            assert module.startswith(f"closurejax.{name}."), (attr, module)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        package.nothing_here  # noqa: B018


def test_importing_a_subpackage_imports_nothing_until_used() -> None:
    out = run_python(
        "import sys, closurejax.evaluation as e\n"
        "print(sorted(m for m in sys.modules if m.startswith('closurejax.')))\n"
        "e.relative_error\n"
        "print('closurejax.evaluation.metrics' in sys.modules)\n",
        1,
    )
    lines = out.strip().splitlines()
    assert lines[-2] == "['closurejax._exports', 'closurejax.evaluation']"
    assert lines[-1] == "True"
