"""Dataset generation end to end on a tiny config: contents, resume, refusal of bad input."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from closurejax import locking
from closurejax.data import generate, store
from closurejax.physics import closures, filters
from closurejax.physics import initial_conditions as ic
from closurejax.physics import navier_stokes as ns
from tests.ctrl_c import lose_a_ctrl_c, python_sigint_handler
from tests.damage import flip_bytes, truncate
from tests.processes import ROOT, fake_devices_env, holding_lock
from tests.tiny import tiny_config as tiny_study


def tiny_config(**data_overrides):
    """The shared tiny study with 4 snapshots per trajectory and chunks of 2 trajectories."""
    return tiny_study(**{"t_end": 0.04, "trajectories_per_chunk": 2, **data_overrides})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gen")
    config = tiny_config()
    paths = generate.generate(config, workdir, show_progress=False, log=lambda _: None)
    return config, workdir, paths


def test_dataset_holds_the_exact_subsampled_closure_of_the_dns(generated):
    config, _, paths = generated
    data = store.open_dataset(paths["dataset"], expected_config=None)
    assert data.split == {"train": [0, 1], "test": [2]}
    assert data.train["omega"].shape == (2, 4, 16, 16)
    assert data.train["sparse_lattice"].shape == (2, 4, 4, 4)
    # recompute trajectory 1, snapshot 2 (t = 0.01 + 2·0.01) by hand
    study = generate.Study.from_config(config)
    solver = study.solver
    ic_keys, run_keys = generate.trajectory_keys(study.seed, [1])
    omega0 = ic.gaussian_random_field(ic_keys[0], 32)
    state = ns.advance(solver.step, solver.initial_state(omega0), run_keys[0], 30)
    target = closures.exact_h(solver, state, ns.step_key(run_keys[0], state))
    np.testing.assert_allclose(data.train["target"][1, 2], target[::2, ::2], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        data.train["omega"][1, 2], solver.vorticity(state)[::2, ::2], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(
        data.train["sparse_lattice"][1, 2], data.train["target"][1, 2, ::4, ::4]
    )
    stats = data.stats["target"]
    train_target = np.asarray(data.train["target"], np.float64)
    assert abs(stats["mean"] - train_target.mean()) < 1e-6 * max(1.0, abs(train_target).max())


def test_zero_shot_dataset_is_the_test_trajectory_at_higher_resolution(generated):
    _, _, paths = generated
    main = store.open_dataset(paths["dataset"])
    zero = store.open_dataset(paths["zero_shot"])
    np.testing.assert_array_equal(zero.test["omega"][0], main.test["omega"][0])
    np.testing.assert_array_equal(zero.test["omega_32"][0][..., ::2, ::2], main.test["omega"][0])
    assert zero.test["sparse_lattice_32"].shape == main.test["sparse_lattice"].shape


def test_killed_generation_resumes_to_the_same_dataset(generated, tmp_path, monkeypatch):
    config, _, paths = generated
    real = generate.simulate_chunk
    calls = {"n": 0}

    def dies_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "simulate_chunk", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt) as stopped:
        generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)
    assert str(stopped.value) == (  # where it stopped (the launchers print it on Ctrl-C)
        f"[dataset] stopped in chunk 2 of 2; 1 of 2 chunks written and kept in {tmp_path}/dataset"
    )
    with pytest.raises(store.DatasetError):
        store.open_dataset(tmp_path / "dataset")  # incomplete: not readable as a dataset
    monkeypatch.setattr(generate, "simulate_chunk", real)
    calls["n"] = 0
    resumed = generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)
    a, b = store.open_dataset(resumed["dataset"]), store.open_dataset(paths["dataset"])
    for name in a.specs:
        np.testing.assert_array_equal(a.train[name], b.train[name])
        np.testing.assert_array_equal(a.test[name], b.test[name])


def test_a_ctrl_c_python_swallowed_stops_generation_at_the_next_chunk(tmp_path, monkeypatch):
    config = tiny_config()
    real = generate.simulate_chunk

    def loses_a_ctrl_c(*args, **kwargs):
        arrays = real(*args, **kwargs)
        lose_a_ctrl_c()  # after the chunk's last progress call: the next chunk's check stops it
        return arrays

    monkeypatch.setattr(generate, "simulate_chunk", loses_a_ctrl_c)
    with python_sigint_handler(), pytest.raises(KeyboardInterrupt) as stopped:
        generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)
    assert str(stopped.value) == (
        f"[dataset] stopped in chunk 2 of 2; 1 of 2 chunks written and kept in {tmp_path}/dataset"
    )


def test_workdir_with_a_dataset_from_another_config_is_refused_untouched(generated):
    config, workdir, paths = generated
    manifest = (paths["dataset"] / "manifest.json").read_bytes()
    other = copy.deepcopy(config)
    other["physics"]["viscosity"] = 2e-3
    with pytest.raises(store.DatasetConfigMismatchError, match="viscosity"):
        generate.generate(other, workdir, show_progress=False, log=lambda _: None)
    assert (paths["dataset"] / "manifest.json").read_bytes() == manifest


def test_les_dataset_has_subgrid_target_and_smagorinsky(tmp_path):
    config = tiny_config(closure="Pi", filter_name="spectral", filter_cutoff=4, zero_shot_sizes=())
    paths = generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)
    data = store.open_dataset(paths["dataset"])
    assert set(data.specs) >= {"omega", "target", "smagorinsky", "sparse_smoothed"}
    assert "zero_shot" not in paths
    # ω̄ is the spectrally filtered, subsampled DNS vorticity: band-limited to |k| ≤ 4 on 16²
    spectrum = np.abs(np.fft.fft2(np.asarray(data.train["omega"][0, 0], np.float64)))
    assert spectrum[5:12, :].max() < 1e-5 * spectrum.max()
    assert spectrum[:, 5:12].max() < 1e-5 * spectrum.max()
    assert np.abs(data.train["smagorinsky"][0]).max() > 0


BAD_CONFIGS = [
    ({"data": {"fine_size": 40}}, "fine_size"),
    ({"data": {"closure": "Q"}}, "closure"),
    ({"data": {"filter_name": "median"}}, "filter_name"),
    ({"data": {"snapshot_interval": 0.0105}}, "snapshot_interval"),
    ({"physics": {"viscosity": 0.0}}, "viscosity"),
    ({"physics": {"viscosity": -1e-3}}, "viscosity"),
    ({"physics": {"dt": 0.0}}, "dt"),
    ({"physics": {"max_cfl": 1e-4}}, "CFL"),
    ({"physics": {"dealias": "three_halves"}}, "dealias"),
    ({"data": {"sparse_stride": 0}}, r"data\.sparse_stride=0 is invalid"),
    ({"data": {"zero_shot_sizes": (0,)}}, r"data\.zero_shot_sizes=\(0,\) is invalid"),
]


@pytest.mark.parametrize("overrides, field", BAD_CONFIGS)
def test_bad_configs_get_clear_errors_and_write_nothing(tmp_path, overrides, field):
    config = tiny_config()
    for section, values in overrides.items():
        config[section].update(values)
    with pytest.raises(ValueError, match=field):
        generate.generate(config, tmp_path / "w", show_progress=False, log=lambda _: None)
    assert not (tmp_path / "w" / "dataset" / "manifest.json").exists()


def test_non_finite_initial_state_is_refused():
    solver = ns.make_solver(ns.FlowParams(), 32)
    omega = jnp.zeros((32, 32)).at[3, 4].set(jnp.nan)
    with pytest.raises(ValueError, match="non-finite"):
        solver.initial_state(omega)
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 32, 32\]"):
        solver.initial_state(jnp.zeros((16, 16)))


def test_coarse_grain_refuses_a_fine_grid_not_multiple_of_coarse():
    with pytest.raises(ValueError, match="multiple"):
        filters.coarse_grain(jnp.zeros((40, 40)), 16, "subsample")


def test_rerun_on_a_complete_workdir_changes_nothing(generated):
    config, workdir, paths = generated
    before = {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()}
    logs: list[str] = []
    again = generate.generate(config, workdir, show_progress=False, log=logs.append)
    assert again == paths and all("already complete" in line for line in logs)
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("section", ["physics", "data"])
def test_unknown_config_fields_are_named(tmp_path, section):
    config = tiny_config()
    config[section]["viscosty"] = 1e-3
    with pytest.raises(ValueError, match=f"unknown {section} config fields.*viscosty"):
        generate.generate(config, tmp_path, show_progress=False, log=lambda _: None)


def test_second_generation_in_a_workdir_is_refused_naming_the_holder(tmp_path):
    """Another process generating in the workdir (it holds the workdir's lock): the library
    refuses before writing anything, the launcher in one line naming the holder."""
    workdir = tmp_path / "w"
    with holding_lock(workdir, "generate_data") as holder:
        with pytest.raises(locking.FolderLockedError, match=f"pid {holder.pid} on host") as info:
            generate.generate(tiny_config(), workdir, show_progress=False, log=lambda _: None)
        assert "\n" not in str(info.value)
        assert sorted(p.name for p in workdir.iterdir()) == [".generate_data.lock"]
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "experiments" / "generate_data.py"),
                f"--config={ROOT / 'experiments' / 'configs' / 'demo.py'}",
                f"--workdir={workdir}",
                "--no_progress",
            ],
            capture_output=True,
            text=True,
            env=fake_devices_env(1),
            cwd=tmp_path,
            timeout=300,
        )
    assert out.returncode == 1, out.stderr[-3000:]
    assert out.stderr.strip().splitlines() == [f"generate_data: {info.value}"]
    assert not (workdir / "dataset").exists()


@pytest.mark.parametrize(
    ("damage", "file", "regenerated"),
    [(truncate, "test/target.npy", 1), (flip_bytes, "train/omega.npy", 1)],
)
def test_rerun_repairs_a_corrupt_file_of_a_complete_dataset(
    generated, tmp_path, monkeypatch, damage, file, regenerated
):
    """A truncated or altered file of a complete dataset is found by its checksum and repaired
    (one line): the chunks holding trajectories of its split are simulated again, the others
    rebuilt from the intact files; the result equals the original dataset."""
    config, workdir, paths = generated
    copy_dir = tmp_path / "w"
    shutil.copytree(workdir, copy_dir)
    damage(copy_dir / "dataset" / file)
    with pytest.raises(store.DatasetCorruptError):
        store.open_dataset(copy_dir / "dataset")
    real, calls = generate.simulate_chunk, []

    def counted(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(generate, "simulate_chunk", counted)
    logs: list[str] = []
    generate.generate(config, copy_dir, show_progress=False, log=logs.append)
    assert logs[0] == (
        f"[dataset] {file} corrupt or missing in {copy_dir / 'dataset'} (checksum mismatch): "
        f"repairing: {2 - regenerated} chunk(s) rebuilt from the intact files, {regenerated} to "
        "regenerate"
    )
    assert logs[-1].startswith("[zero_shot] already complete") and len(calls) == regenerated
    a, b = store.open_dataset(copy_dir / "dataset"), store.open_dataset(paths["dataset"])
    assert a.manifest == b.manifest
    for split in store.SPLITS:
        for name in a.specs:
            np.testing.assert_array_equal(a.arrays(split)[name], b.arrays(split)[name])
