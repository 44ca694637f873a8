"""Lazy re-exports for the subpackages' public names (PEP 562 module `__getattr__`).

`from closurejax.physics import make_solver` imports `closurejax.physics.navier_stokes` on first
use only, so importing a subpackage costs nothing until a name is used (the benchmark records and
timers, for instance, must not pay for the physics stack) and no import cycle can arise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """(`__all__`, `__getattr__`, `__dir__`) for `package` re-exporting `exports`
    ({submodule: names}); a name is looked up in its submodule when first accessed."""
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name!r} exported by {where[name]} and {module}")
            where[name] = module

    def __getattr__(name: str) -> Any:  # noqa: N807 (the module hook's name)
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(where)

    return sorted(where), __getattr__, __dir__
