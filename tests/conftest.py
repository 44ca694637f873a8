"""Fixtures shared by all tests."""

import os
from collections.abc import Iterator

import jax
import pytest

_CACHE_SETTINGS = {
    "jax_compilation_cache_dir": None,  # the session's folder, set below
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One persistent XLA compilation cache for the test session (a fresh folder each session).

    Many tests build a new `Trainer`, sampler or solver for the same tiny config; each jit-compiles
    its own closures, and XLA would otherwise compile the identical programs again every time
    (≈ 5–10 s per training on 2 CPU cores). A cache hit returns the very executable the first
    compilation produced, so no result changes. The settings also go to the environment, so the
    launchers and notebooks that tests run as subprocesses share the cache.
    """
    from jax.experimental.compilation_cache import compilation_cache as cc

    settings = {**_CACHE_SETTINGS, "jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla"))}
    previous = {name: getattr(jax.config, name) for name in settings}
    previous_env = {name.upper(): os.environ.get(name.upper()) for name in settings}
    cc.reset_cache()
    for name, value in settings.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    for name, value in previous_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    cc.reset_cache()


@pytest.fixture
def x64() -> Iterator[None]:
    """Runs a test in float64 (tight physics tolerances), restoring the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
