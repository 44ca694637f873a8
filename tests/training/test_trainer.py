"""Tests of closurejax.training.trainer on a 2-layer MLP fitting a toy regression.

Exact resume (killed run == uninterrupted run, bit for bit), checkpoints, keep-N, non-finite
loss handling, metrics log, optimiser config and schedules, and data parallelism on fake devices.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from closurejax.data.pipeline import Batches
from closurejax.training.checkpoint import IncompatibleCheckpointError
from closurejax.training.trainer import (
    NonFiniteLossError,
    OptimConfig,
    Trainer,
    make_schedule,
    read_metrics,
)
from tests.ctrl_c import lose_a_ctrl_c, python_sigint_handler
from tests.processes import run_python

N_SAMPLES = 40
BATCH = 8  # 5 steps per epoch


def toy_data(n: int = N_SAMPLES) -> dict[str, np.ndarray]:
    x = np.linspace(-2.0, 2.0, n, dtype=np.float32)[:, None]
    return {"x": x, "y": np.sin(2.0 * x)}


IDENTITY = {"x": {"mean": 0.0, "std": 1.0}, "y": {"mean": 0.0, "std": 1.0}}


def make_batches(seed: int = 3) -> Batches:
    return Batches(toy_data(), ["x", "y"], BATCH, seed, stats=IDENTITY)


def mlp_init(width: int = 16):
    def init(key: jax.Array) -> dict:
        k1, k2 = jax.random.split(key)
        return {
            "dense_0": {"kernel": jax.random.normal(k1, (1, width)), "bias": jnp.zeros(width)},
            "dense_1": {
                "kernel": jax.random.normal(k2, (width, 1)) / math.sqrt(width),
                "bias": jnp.zeros(1),
            },
        }

    return init


def mlp(params: dict, x: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ params["dense_0"]["kernel"] + params["dense_0"]["bias"])
    return h @ params["dense_1"]["kernel"] + params["dense_1"]["bias"]


def loss_fn(params: dict, batch: dict[str, jax.Array], key: jax.Array):
    """MSE with input jitter drawn from the step key (so the key matters for exactness)."""
    x = batch["x"] + 0.01 * jax.random.normal(key, batch["x"].shape)
    err = mlp(params, x) - batch["y"]
    loss = jnp.mean(err**2)
    bad = batch.get("bad")
    if bad is not None:
        loss = jnp.where(jnp.max(bad) > 0, jnp.nan, loss)
    return loss, {"mae": jnp.mean(jnp.abs(err))}


OPTIM = OptimConfig(learning_rate=3e-2, decay_every_epochs=1, num_steps=12, ema_decay=0.9)


def trainer(workdir: Path, batches=None, optim: OptimConfig = OPTIM, **kwargs) -> Trainer:
    kwargs = {"checkpoint_every": 4, "log_every": 1, "show_progress": False, **kwargs}
    return Trainer(
        kwargs.pop("init_fn", mlp_init()),
        loss_fn,
        make_batches() if batches is None else batches,
        optim,
        workdir,
        **kwargs,
    )


class KillAt:
    """Batch source that dies (like a killed process) when asked for step `kill_step`."""

    def __init__(self, inner: Batches, kill_step: int) -> None:
        self.inner, self.kill_step = inner, kill_step
        self.steps_per_epoch = inner.steps_per_epoch

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        if step == self.kill_step:
            raise KeyboardInterrupt(f"killed at step {step}")
        return self.inner.batch_at(step)


class PoisonAt:
    """Batch source whose batch of step `bad_step` carries a flag that makes the loss NaN."""

    def __init__(self, inner: Batches, bad_step: int) -> None:
        self.inner, self.bad_step = inner, bad_step
        self.steps_per_epoch = inner.steps_per_epoch

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        batch = dict(self.inner.batch_at(step))
        batch["bad"] = jnp.full((BATCH,), float(step == self.bad_step))
        return batch


def assert_states_identical(a, b) -> None:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def metric_steps(workdir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(workdir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory):
    """A 12-step run without interruption: (final host state, metrics records)."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    t = trainer(workdir)
    initial = jax.device_get(t.state)
    state = jax.device_get(t.train())
    return initial, state, read_metrics(workdir / "metrics.jsonl"), t.checkpoints.all_steps()


def test_training_fits_logs_and_checkpoints(uninterrupted) -> None:
    initial, state, records, steps = uninterrupted
    assert int(state.step) == 12
    assert steps == [4, 8, 12]  # every 4 steps and at the end, keep=3
    assert [r["step"] for r in records] == list(range(1, 13))
    first, last = records[0], records[-1]
    assert set(first) == {"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s", "mae"}
    data = toy_data()

    def full_mse(params: dict) -> float:
        return float(jnp.mean((mlp(params, data["x"]) - data["y"]) ** 2))

    assert full_mse(state.params) < 0.75 * full_mse(initial.params)  # ≈ 0.45 -> 0.29
    assert last["loss"] < first["loss"]
    assert all(math.isfinite(r["grad_norm"]) and r["samples_per_s"] > 0 for r in records)
    assert last["epoch"] == pytest.approx(12 / 5)
    # step decay x0.5 every epoch (5 steps): lr of the update from step k is 3e-2 * 0.5**(k // 5)
    for r in records:
        assert r["lr"] == pytest.approx(3e-2 * 0.5 ** ((r["step"] - 1) // 5), rel=1e-6)
    # the EMA is a different, smoother average of the parameters
    assert not np.array_equal(
        state.ema_params["dense_0"]["kernel"], state.params["dense_0"]["kernel"]
    )
    assert_states_identical(initial.params, initial.ema_params)


def test_ema_update_rule(tmp_path: Path) -> None:
    t = trainer(tmp_path, log_every=100)
    before = jax.device_get(t.state)  # copy: the train step donates the state's buffers
    after = jax.device_get(t.train(num_steps=1))
    for e0, p1, e1 in zip(
        jax.tree.leaves(before.ema_params),
        jax.tree.leaves(after.params),
        jax.tree.leaves(after.ema_params),
        strict=True,
    ):
        # first update (k = 0): warm-up decay min(0.9, 1/10) = 0.1
        np.testing.assert_allclose(e1, 0.1 * e0 + 0.9 * p1, rtol=1e-6, atol=1e-7)
    later = jax.device_get(t.train(num_steps=2))  # k = 1: decay min(0.9, 2/11)
    for e1, p2, e2 in zip(
        jax.tree.leaves(after.ema_params),
        jax.tree.leaves(later.params),
        jax.tree.leaves(later.ema_params),
        strict=True,
    ):
        np.testing.assert_allclose(e2, (2 / 11) * e1 + (9 / 11) * p2, rtol=1e-6, atol=1e-7)
    t_off = trainer(tmp_path / "off", optim=OptimConfig(num_steps=2, ema_decay=0.0))
    off = t_off.train()
    assert_states_identical(off.params, off.ema_params)


def test_killed_run_resumes_bit_identical(tmp_path: Path, uninterrupted) -> None:
    _, reference, ref_records, _ = uninterrupted
    # killed while fetching batch 10: the last checkpoint is step 8, the log reaches step 9
    with pytest.raises(KeyboardInterrupt) as stopped:
        trainer(tmp_path, batches=KillAt(make_batches(), 10)).train()
    assert str(stopped.value) == (  # where it stopped (the launchers print it on Ctrl-C)
        f"training {tmp_path} stopped at step 10 of 12; latest checkpoint: step 8 in "
        f"{tmp_path / 'checkpoints'}"
    )
    assert metric_steps(tmp_path) == list(range(1, 10))
    resumed = trainer(tmp_path)
    assert resumed.step == 8
    final = jax.device_get(resumed.train())
    assert_states_identical(final, reference)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))  # line 9 dropped, no duplicate
    for got, want in zip(records, ref_records, strict=True):
        assert {k: v for k, v in got.items() if k != "samples_per_s"} == {
            k: v for k, v in want.items() if k != "samples_per_s"
        }


def test_stopped_run_continued_by_a_new_trainer_is_bit_identical(
    tmp_path: Path, uninterrupted
) -> None:
    _, reference, _, _ = uninterrupted
    first = trainer(tmp_path, checkpoint_every=5)
    first.train(num_steps=7)  # saves 5 and, at the end, 7
    assert first.checkpoints.all_steps() == [5, 7]
    again = trainer(tmp_path, checkpoint_every=5)
    assert again.step == 7
    assert_states_identical(jax.device_get(again.train()), reference)
    assert metric_steps(tmp_path) == list(range(1, 13))
    assert again.train() is again.state  # already finished: nothing to do
    assert metric_steps(tmp_path) == list(range(1, 13))


def test_keep_n_deletes_old_checkpoints(tmp_path: Path) -> None:
    t = trainer(tmp_path, checkpoint_every=2, keep=2, log_every=5)
    t.train()
    assert t.checkpoints.all_steps() == [10, 12]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "12"]
    assert metric_steps(tmp_path) == [5, 10, 12]  # every 5 steps and at the end
    meta = t.checkpoints.metadata()
    assert meta["optim"]["num_steps"] == 12 and meta["seed"] == 0 and meta["step"] == 12
    assert meta["signature"]["params/dense_0/kernel"]["shape"] == [1, 16]


def test_non_finite_loss_stops_without_saving(tmp_path: Path) -> None:
    t = trainer(tmp_path, batches=PoisonAt(make_batches(), 6))
    with pytest.raises(NonFiniteLossError) as info:
        t.train()
    err = info.value
    assert err.step == 6 and math.isnan(err.loss)
    assert "step 6" in str(err) and "loss=nan" in str(err), str(err)
    assert "latest checkpoint: step 4" in str(err)
    assert t.checkpoints.all_steps() == [4]  # the bad state was not saved
    assert t.step == 6  # the last good state (after 6 updates) is kept in memory
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(t.state))
    resumed = trainer(tmp_path, batches=PoisonAt(make_batches(), 6))
    assert resumed.step == 4
    assert metric_steps(tmp_path) == list(range(1, 7))


def test_incompatible_architecture_is_refused(tmp_path: Path) -> None:
    trainer(tmp_path).train(num_steps=4)
    with pytest.raises(IncompatibleCheckpointError) as info:
        trainer(tmp_path, init_fn=mlp_init(width=32))
    msg = str(info.value)
    assert "'params/dense_0/bias'" in msg and "(16,)" in msg and "(32,)" in msg, msg


def test_train_and_trainer_arguments_are_validated(tmp_path: Path) -> None:
    t = trainer(tmp_path)
    with pytest.raises(ValueError, match=r"num_steps must be None or an integer in \[0, 12\]"):
        t.train(num_steps=13)
    with pytest.raises(ValueError, match="log_every must be an integer >= 1"):
        trainer(tmp_path, log_every=0)
    with pytest.raises(ValueError, match="set one of num_epochs, num_steps"):
        trainer(tmp_path, optim=OptimConfig())
    bad_aux = Trainer(
        mlp_init(),
        lambda p, b, k: (loss_fn(p, b, k)[0], {"loss": jnp.zeros(())}),
        make_batches(),
        OPTIM,
        tmp_path / "aux",
        show_progress=False,
    )
    with pytest.raises(ValueError, match="aux key 'loss' clashes"):
        bad_aux.train(num_steps=1)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("learning_rate", 0.0, "a finite number > 0"),
        ("schedule", "linear", "one of ('step', 'cosine', 'constant')"),
        ("decay_factor", 1.5, "(0, 1]"),
        ("decay_every_epochs", 0, "an integer >= 1"),
        ("warmup_steps", -1, "an integer >= 0"),
        ("grad_clip_norm", 0.0, "None or a number > 0"),
        ("ema_decay", 1.0, "[0, 1)"),
        ("num_steps", 2.5, "None or an integer >= 1"),
    ],
)
def test_optim_config_validation(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        OptimConfig(**{field: value})
    assert f"optim.{field}={value!r}" in str(info.value) and needle in str(info.value)


def test_optim_config_lengths_and_schedules() -> None:
    with pytest.raises(ValueError, match="both set"):
        OptimConfig(num_epochs=3, num_steps=10)
    assert OptimConfig(num_epochs=3).total_steps(95) == 285
    assert OptimConfig(num_steps=10).total_steps(95) == 10
    paper = make_schedule(OptimConfig(num_epochs=1000), steps_per_epoch=95)  # arXiv 2408.02965
    lrs = [float(paper(s)) for s in (0, 200 * 95 - 1, 200 * 95, 400 * 95, 999 * 95)]
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 5e-4, 2.5e-4, 1e-3 * 0.5**4], rtol=1e-6)
    warm = make_schedule(
        OptimConfig(schedule="cosine", warmup_steps=4, num_steps=14), steps_per_epoch=5
    )
    lrs = [float(warm(s)) for s in (0, 3, 4, 9, 14)]
    np.testing.assert_allclose(lrs, [2.5e-4, 1e-3, 1e-3, 5e-4, 0.0], rtol=1e-5, atol=1e-9)
    const = make_schedule(OptimConfig(schedule="constant", num_steps=3), steps_per_epoch=5)
    assert float(const(1000)) == pytest.approx(1e-3)


def test_clipping_and_weight_decay_build_and_train(tmp_path: Path) -> None:
    optim = OptimConfig(num_steps=3, grad_clip_norm=1e-3, weight_decay=1e-2, schedule="cosine")
    t = trainer(tmp_path, optim=optim)
    before = jax.device_get(t.state.params)
    after = t.train()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == 3 and all(r["grad_norm"] > 1e-3 for r in records)
    assert not np.array_equal(before["dense_0"]["kernel"], after.params["dense_0"]["kernel"])


DATA_PARALLEL = """
import json, sys
import jax, numpy as np
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from closurejax import parallel
import test_trainer as tt

assert jax.device_count() == 4
work = Path(sys.argv[1])
one = tt.trainer(work / "one", mesh=parallel.data_mesh(jax.devices()[:1]), checkpoint_every=100)
four = tt.trainer(work / "four", mesh=parallel.data_mesh(), checkpoint_every=100)
assert four.state.params["dense_0"]["kernel"].sharding.is_fully_replicated
assert len(four.state.params["dense_0"]["kernel"].sharding.device_set) == 4
s1, s4 = one.train(num_steps=6), four.train(num_steps=6)
assert s4.params["dense_0"]["kernel"].sharding.is_fully_replicated
assert len(s4.params["dense_0"]["kernel"].sharding.device_set) == 4
for a, b in zip(jax.tree.leaves(jax.device_get(s1)), jax.tree.leaves(jax.device_get(s4))):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
assert four.checkpoints.metadata()["num_devices"] == 4
# a batch of 6 does not split over 4 devices: refused before any step
odd = tt.Batches(tt.toy_data(), ["x", "y"], 6, 0, stats=tt.IDENTITY)
try:
    tt.trainer(work / "odd", batches=odd, mesh=parallel.data_mesh()).train(num_steps=1)
except ValueError as e:
    assert "batch size 6" in str(e) and "4 devices" in str(e), e
else:
    raise AssertionError("batch of 6 on 4 devices was accepted")
print("OK")
"""


def test_data_parallel_on_4_devices_matches_one_device(tmp_path: Path) -> None:
    out = run_python(DATA_PARALLEL, 4, str(tmp_path), str(Path(__file__).parent))
    assert out.strip().endswith("OK"), out


def test_metrics_lines_are_json_with_one_record_each(tmp_path: Path) -> None:
    trainer(tmp_path, log_every=3).train(num_steps=6)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6]
    # a torn last line (killed while writing) is dropped on resume
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "lo')
    t = trainer(tmp_path, log_every=3)
    t.train(num_steps=9)
    assert metric_steps(tmp_path) == [3, 6, 9]
    assert all(
        line.startswith("{") for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    )


class InterruptInsideStep:
    """Wraps a trainer's jitted step: runs it (donating the state's buffers), then raises
    KeyboardInterrupt before the new state is assigned — Ctrl-C while the device computes."""

    def __init__(self, step_fn, at: int) -> None:
        self.step_fn, self.at, self.calls = step_fn, at, 0

    def __call__(self, state, batch):
        out = self.step_fn(state, batch)
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt("inside the step")
        return out


def test_ctrl_c_inside_the_donating_step_still_says_where_it_stopped(tmp_path: Path) -> None:
    t = trainer(tmp_path)
    t._train_step = InterruptInsideStep(t._train_step, at=5)
    with pytest.raises(KeyboardInterrupt) as stopped:
        t.train()
    assert str(stopped.value) == (
        f"training {tmp_path} stopped at step 4 of 12; latest checkpoint: step 4 in "
        f"{tmp_path / 'checkpoints'}"
    )


class LosesCtrlCAt:
    """Batch source that, asked for step `at`, receives a Ctrl-C that Python swallows."""

    def __init__(self, inner: Batches, at: int) -> None:
        self.inner, self.at = inner, at
        self.steps_per_epoch = inner.steps_per_epoch

    def batch_at(self, step: int) -> dict[str, jax.Array]:
        if step == self.at:
            lose_a_ctrl_c()
        return self.inner.batch_at(step)


def test_a_ctrl_c_python_swallowed_still_stops_training_at_the_next_step(tmp_path: Path) -> None:
    t = trainer(tmp_path, batches=LosesCtrlCAt(make_batches(), at=6))
    with python_sigint_handler(), pytest.raises(KeyboardInterrupt) as stopped:
        t.train()
    # asked for step 6's batch after step 5 ran: the check before step 6 stops the loop
    assert str(stopped.value) == (
        f"training {tmp_path} stopped at step 6 of 12; latest checkpoint: step 4 in "
        f"{tmp_path / 'checkpoints'}"
    )
