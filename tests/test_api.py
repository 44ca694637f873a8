"""The public API: every re-exported name is the object of its module, and importing a
subpackage imports none of its modules until a name is used."""

from __future__ import annotations

import importlib

import pytest

from tests.processes import run_python

PACKAGES = (
    "physics",
    "data",
    "models",
    "diffusion",
    "training",
    "simulation",
    "evaluation",
    "benchmarks",
)


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


def test_the_library_never_imports_experiments() -> None:
    """Config values live in experiments/configs, the schema in closurejax.config: no module of
    closurejax imports `experiments` (statically, or by name through importlib)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "closurejax"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else []
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
                names = [a.value for a in node.args if isinstance(a, ast.Constant)]
                names += [
                    a.values[0].value
                    for a in node.args
                    if isinstance(a, ast.JoinedStr) and isinstance(a.values[0], ast.Constant)
                ]
            else:
                continue
            for name in names:
                if isinstance(name, str) and name.split(".")[0] == "experiments":
                    offenders.append(f"{path.relative_to(root.parent)}:{node.lineno} {name}")
    assert len(list(root.rglob("*.py"))) > 40
    assert offenders == []


def test_no_file_names_a_path_outside_the_repository() -> None:
    """The project stands alone: no tracked file (this one included) names a relative path that
    climbs out of the checkout into a directory, a Markdown document the repository does not
    hold, or an absolute path under the directory that holds the checkout or under a home
    directory (paths of the development machine)."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    if not files:  # not a git checkout (an sdist): nothing to check
        return
    documents = {Path(name).name for name in files if name.endswith(".md")}
    machine = [r"/home/\w+/"]
    for directory in (root.parent, Path.home()):  # known here, named nowhere
        temporary = Path(tempfile.gettempdir()).resolve()
        if directory != Path("/") and temporary not in (directory, *directory.parents):
            machine.append(re.escape(f"{directory}/"))
    outside = re.compile(r"\.\./[A-Za-z][\w-]*/|" + "|".join(machine))
    markdown = re.compile(r"[\w.-]+\.md\b")
    offenders = []
    for name in files:
        path = root / name
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:  # binary (figures, weights)
            continue
        offenders += [f"{name}: {m.group(0)}" for m in outside.finditer(text)]
        offenders += [
            f"{name}: {m.group(0)}" for m in markdown.finditer(text) if m.group(0) not in documents
        ]
    assert not offenders, offenders


def test_every_module_attribute_the_library_uses_exists() -> None:
    """`module.name` in the library, for each closurejax module a file imports, names something
    that module has: a rename that missed a caller (or a blanket edit that broke one) fails here
    at once rather than in the one slow path that reaches it."""
    import ast
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    missing = []
    for path in sorted((root / "closurejax").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        modules: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if (
                        full.startswith("closurejax.")
                        and importlib.util.find_spec(node.module) is not None
                    ):
                        try:
                            importlib.import_module(full)
                        except ImportError:  # a name, not a module
                            continue
                        modules[alias.asname or alias.name] = full
        shadowed = {
            t.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.value.id not in shadowed
                and not hasattr(importlib.import_module(modules[node.value.id]), node.attr)
            ):
                missing.append(
                    f"{path.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}"
                )
    assert not missing, missing
