"""A coupled ensemble rollout over two processes equals the single-process, unsharded run.

Two processes on localhost (2 fake CPU devices each, gloo collectives), joined by
`parallel.initialize_distributed`, run one coupled ensemble rollout — closure H supplied by a
`DiffusionClosure` of a tiny untrained conditional FNO score model, sampled every 2 steps so both
the sample and the reuse branch of the step's `lax.cond` run — with the members sharded over the
global 4-device `("data",)` mesh; each gathers the result to the host. This test's own process
runs the same rollout unsharded on one device, and the gathered results must match it.

The run is built by `coupled_case()` below, which the worker processes import from this file, so
both sides build exactly the same step, carry and key.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from closurejax.diffusion import conditional, samplers
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled
from tests.processes import two_processes

N = 16  # coarse grid
MEMBERS = 8  # 2 per device on the 4-device mesh
NUM_STEPS, SAVE_EVERY, EVERY = 6, 2, 2  # samples on steps 0, 2, 4; reuses on 1, 3, 5
RTOL = 1e-6  # max |sharded − unsharded| ≤ RTOL · max |unsharded|, per compared array


def coupled_case() -> tuple[coupled.CoupledStep, coupled.CoupledCarry, jax.Array]:
    """(step, carry `[MEMBERS, …]`, run key) of the compared rollout; deterministic.

    Solver 16², closure H; source: `DiffusionClosure` of an untrained `ConditionalFNO` (P-CDM
    layout, ω only; width 4, modes 2, depth 1, embed 8) sampled with 2 Euler–Maruyama steps;
    reuse noise 1e-3 so that the reuse branch changes the applied field. The parameters (with
    the shapes of `model.init`, from `jax.eval_shape`) and the smooth initial vorticity (a few
    random Fourier modes) are drawn with a seeded numpy Generator: the same on every process,
    and nothing to compile (a jitted `model.init` costs ≈ 3 s of CPU per process).
    """
    from experiments.configs import paper_b

    flow = ns.FlowParams(noise_sigma=0.05, noise_modes=4)
    solver = ns.make_solver(flow, N, closure="H")
    config = paper_b.get_config().to_dict()
    config["model"].update(width=4, modes=2, depth=1, embed_dim=8, spectral_method="dft")
    stats = {"omega": {"mean": 0.0, "std": 3.0}, "target": {"mean": 0.0, "std": 1.0}}
    model = conditional.from_config(config, stats)
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(functools.partial(model.init, n=N), jax.random.PRNGKey(0))
    params = jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    sampler = samplers.SamplerConfig("euler_maruyama", num_steps=2, t_min=1e-3, t_max=0.4)
    source = coupled.DiffusionClosure(model, params, sampler)
    step = coupled.make_coupled_step(solver, source, every=EVERY, reuse_noise=1e-3)
    # ω_m = Σ_{1 ≤ kx, ky ≤ 4} (a cos + b sin)(2π(kx x + ky y)) / |k|², scaled to std 3
    x, k = np.arange(N) / N, np.arange(1, 5)
    phase = 2 * np.pi * (k[:, None, None, None] * x[:, None] + k[:, None, None] * x)
    coef = rng.standard_normal((2, MEMBERS, 4, 4)) / (k[:, None] ** 2 + k**2)
    omega = np.einsum("mab,abxy->mxy", coef[0], np.cos(phase))
    omega += np.einsum("mab,abxy->mxy", coef[1], np.sin(phase))
    omega = (3.0 * omega / omega.std()).astype(np.float32)
    carry = coupled.initial_carry(solver, solver.initial_state(omega))
    return step, carry, jax.random.PRNGKey(2)


def compared(final: coupled.CoupledCarry, snaps: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The arrays of an ensemble rollout that the worker processes and the test compare."""
    return {
        "snaps": snaps,
        "sample": final.sample_hat,
        "closure": final.closure_hat,
        "omega_hat": final.state.omega_hat,
        "step": final.state.step,
        "bad": report["first_nonfinite_step"],
    }


WORKER = """
import sys
import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
from closurejax import parallel

pid, port, case_dir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
assert parallel.initialize_distributed(f"localhost:{port}", 2, pid) is True
import numpy as np
from jax.experimental import multihost_utils

sys.path.insert(0, case_dir)
import test_coupled_distributed as case

from closurejax.simulation import coupled

assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
mesh = parallel.data_mesh()
step, carry, key = case.coupled_case()
final, snaps, report = coupled.ensemble_rollout(
    step, carry, key, case.NUM_STEPS, case.SAVE_EVERY, mesh=mesh
)
assert not snaps.is_fully_addressable and len(snaps.sharding.device_set) == 4, snaps.sharding
assert len(snaps.addressable_shards) == 2
# Parameters committed to one local device (e.g. restored from a checkpoint) and a typed key:
# ensemble_rollout replicates the weights over the mesh and places the key data itself.
committed = jax.device_put(step, jax.local_devices()[0])
typed_key = jax.random.wrap_key_data(key)
_, replicated, _ = coupled.ensemble_rollout(
    committed, carry, typed_key, case.NUM_STEPS, case.SAVE_EVERY, mesh=mesh
)
gathered = {"snaps_replicated_params": replicated, **case.compared(final, snaps, report)}
gathered = {k: np.asarray(multihost_utils.process_allgather(v, tiled=True))
            for k, v in gathered.items()}
np.savez(out, **gathered)
print("OK", pid)
"""


@pytest.mark.slow  # two processes: ≈ 13 s on 2 cores
def test_coupled_ensemble_over_two_processes_equals_the_single_process_run(
    tmp_path: Path,
) -> None:
    outs = [tmp_path / f"process{pid}.npz" for pid in (0, 1)]
    here = str(Path(__file__).parent)
    with two_processes(textwrap.dedent(WORKER), lambda pid: (here, str(outs[pid])), timeout=300):
        # the single-process reference, computed here while the two workers run
        step, carry, key = coupled_case()
        final, snaps, report = coupled.ensemble_rollout(step, carry, key, NUM_STEPS, SAVE_EVERY)
        expected = {k: np.asarray(v) for k, v in compared(final, snaps, report).items()}
        expected["snaps_replicated_params"] = expected["snaps"]

    # the reference itself is a non-trivial run: finite, the model's samples applied, the reuse
    # branch adding noise on the last step (5: a reuse step), members differing
    assert snaps.shape == (MEMBERS, NUM_STEPS // SAVE_EVERY + 1, N, N)
    np.testing.assert_array_equal(expected["bad"], -1)
    np.testing.assert_array_equal(expected["step"], NUM_STEPS)
    assert np.all(np.isfinite(expected["snaps"]))
    sample = np.fft.irfft2(expected["sample"], s=(N, N))  # the carry keeps them spectral
    reuse_noise = np.fft.irfft2(expected["closure"] - expected["sample"], s=(N, N))
    assert np.abs(sample).max() > 1e-3
    assert 1e-4 < np.abs(reuse_noise).max() < 1e-2
    assert np.abs(expected["snaps"][0, -1] - expected["snaps"][1, -1]).max() > 1e-3

    for pid in (0, 1):
        got = dict(np.load(outs[pid]))
        assert set(got) == set(expected)
        for name, want in expected.items():
            assert got[name].shape == want.shape and got[name].dtype == want.dtype, name
            scale = max(float(np.abs(want).max()), 1e-30)
            err = float(np.abs(got[name] - want).max())
            assert err <= RTOL * scale, (
                f"process {pid}: {name} differs by {err:.3g} (scale {scale:.3g})"
            )
