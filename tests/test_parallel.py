"""Tests of closurejax.parallel on fake CPU devices and two local processes (in subprocesses).

The device count is fixed when jax starts (``XLA_FLAGS`` before the import), so every
multi-device check runs in a fresh Python process.
"""

from __future__ import annotations

import jax
import pytest

from closurejax import parallel
from tests.processes import run_python, two_processes

SHARDED_MATCHES_UNSHARDED = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import AxisType, PartitionSpec
from closurejax import parallel

assert jax.device_count() == 8
mesh = parallel.data_mesh()
assert mesh.axis_names == ("data",) and mesh.shape["data"] == 8
assert mesh.axis_types == (AxisType.Auto,)

rng = np.random.default_rng(0)
batch = {"x": rng.normal(size=(16, 5)).astype(np.float32),
         "y": rng.normal(size=(16,)).astype(np.float32)}
w = rng.normal(size=(5,)).astype(np.float32)

def loss(w, batch):
    return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)

f = jax.jit(jax.value_and_grad(loss))
ref_loss, ref_grad = f(jnp.asarray(w), jax.tree.map(jnp.asarray, batch))

sharded = parallel.shard_batch(batch, mesh)
for leaf in jax.tree.leaves(sharded):
    assert leaf.sharding.spec == PartitionSpec("data"), leaf.sharding
    assert len(leaf.addressable_shards) == 8
    assert leaf.addressable_shards[0].data.shape[0] == 2
rw = parallel.replicate(w, mesh)
assert rw.sharding.is_fully_replicated and len(rw.sharding.device_set) == 8
got_loss, got_grad = f(rw, sharded)
assert got_grad.sharding.is_fully_replicated, got_grad.sharding
np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-6)
np.testing.assert_allclose(got_grad, ref_grad, rtol=1e-5, atol=1e-7)
# Auto axes: indexing a sharded array works (Explicit axes would raise ShardingTypeError).
np.testing.assert_array_equal(sharded["x"][3], batch["x"][3])

# a sub-mesh of 4 devices refuses a batch of 6 clearly
small = parallel.data_mesh(jax.devices()[:4])
try:
    parallel.shard_batch({"x": np.zeros((6, 3), np.float32)}, small)
except ValueError as e:
    msg = str(e)
    assert "batch size 6" in msg and "4 devices" in msg and "['x']" in msg, msg
else:
    raise AssertionError("batch of 6 on 4 devices was accepted")
try:
    parallel.shard_batch({"s": np.float32(1.0)}, small)
except ValueError as e:
    assert "scalar" in str(e), e
else:
    raise AssertionError("a scalar leaf was accepted")
print("OK")
"""


def test_sharded_jit_matches_unsharded_on_8_devices() -> None:
    assert run_python(SHARDED_MATCHES_UNSHARDED, 8).strip().endswith("OK")


TWO_PROCESSES = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from closurejax import parallel
pid, port = int(sys.argv[1]), sys.argv[2]
assert parallel.initialize_distributed(f"localhost:{port}", 2, pid) is True
import jax.numpy as jnp, numpy as np
assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
mesh = parallel.data_mesh()
x = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)  # the global batch, same on both
xs = parallel.shard_batch(x, mesh)
assert not xs.is_fully_addressable and len(xs.addressable_shards) == 2
w = parallel.replicate(np.array([1.0, -2.0, 0.5], np.float32), mesh)
f = jax.jit(lambda x, w: jnp.mean((x @ w) ** 2), out_shardings=parallel.replicated_sharding(mesh))
got = float(f(xs, w))
want = float(np.mean((x @ np.array([1.0, -2.0, 0.5])) ** 2))
assert abs(got - want) <= 1e-5 * abs(want), (got, want)
print("OK", pid)
"""


def test_two_processes_share_one_mesh() -> None:
    with two_processes(TWO_PROCESSES, timeout=120):
        pass


def test_initialize_distributed_single_process_is_a_no_op() -> None:
    code = """
    import jax
    from closurejax import parallel
    assert parallel.initialize_distributed(num_processes=1) is False
    assert parallel.initialize_distributed() is False  # no cluster detected
    assert not jax.distributed.is_initialized()
    assert jax.process_count() == 1 and jax.device_count() == 2
    print("OK")
    """
    assert run_python(code, 2).strip().endswith("OK")


def test_initialize_distributed_validates_arguments() -> None:
    with pytest.raises(ValueError, match="num_processes must be >= 1"):
        parallel.initialize_distributed("localhost:1", 0, 0)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        parallel.initialize_distributed("localhost:1", 2, 5)


def test_single_device_mesh_and_helpers() -> None:
    mesh = parallel.data_mesh(jax.devices()[:1])
    batch = parallel.shard_batch({"x": jax.numpy.ones((3, 2))}, mesh)
    assert batch["x"].shape == (3, 2)
    with pytest.raises(ValueError, match="expected a 'data' axis"):
        parallel.batch_sharding(jax.sharding.Mesh(jax.devices()[:1], ("model",)))
    with pytest.raises(ValueError, match="at least one device"):
        parallel.data_mesh([])
