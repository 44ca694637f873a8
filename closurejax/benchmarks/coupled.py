"""Benchmark group "coupled": the online run with a diffusion closure (`make bench ONLY=coupled`).

Paper B's online setting (arXiv 2506.20771, after arXiv 2408.02965's online use): a 64² solver with
closure H, the closure sampled every 5 steps by 10 Euler–Maruyama steps (t ∈ [1e-3, 0.4], Karras
ρ = 7), reused in between plus N(0, (5e-5)²) noise; an ensemble of 100 members from one initial
condition, 20 000 steps. Paper B's runtimes on one GPU: P-CDM 904 s, L-CDM 325 s, no closure 1.8 s.
Here the fused coupled step (`closurejax.simulation.coupled`) runs for M ∈ {1, 100} members (quick:
16², M = 2, a tiny network) and records, for every closure model ("case"):

* `coupled/{case}/m{M}/step_seconds` — seconds per solver step of the whole ensemble, from one
  `ensemble_rollout` of K steps (K a multiple of 5), divided by K;
* `coupled/{case}/m{M}/member_step_seconds` — `step_seconds / M`;
* `coupled/{case}/m{M}/no_closure_ratio` — `step_seconds` / that of the no-closure run
  (`Solver(closure="none")` + `NoClosure`, same M and K);
* `coupled/{case}/m{M}/network_seconds` — the network evaluations one closure sample of M
  members must do, timed on their own with the functions and shapes the sampler uses (P-CDM:
  one condition `encode` at batch M + NFE score evaluations — the target-branch `denoise`
  forward — at batch M, run in a loop like the sampler's, see `chained`);
* `coupled/{case}/m{M}/network_ratio` — (time per 5-step block = 5 × `step_seconds`) /
  `network_seconds`: what the solver, the sampler's arithmetic, the reuse steps and data movement
  add on top of the network (1 = nothing). Target ≤ 1.1;
* `coupled/{case}/m{M}/paper_run_seconds` — the paper's run projected from this measurement:
  `member_step_seconds × 100 members × 20 000 steps` (exact at M = 100; at M = 1, the members
  run one after another). Compare with paper B's GPU numbers in the record's config.

and for the baseline — the papers' "without closure" run: the closure-H solver fed the zero
field, with the reuse noise (`NoClosure`) — `coupled/none/m{M}/step_seconds`,
`…/member_step_seconds`, `…/paper_run_seconds` and `…/floor_ratio`: its step time over the time of
the work it must do (`CoupledStep.cost`: on reuse steps n² normals per member for the reuse noise,
drawn in spectral space, and nothing else; on sampling steps nothing), timed as `fft_floor`
chains in the same interleaved rounds; target ≤ 1.5 at M = 100. Beside it,
`coupled/dns/m{M}/member_step_seconds`: the full solver step (advection and forcing noise, no
closure) at the same grid, per member.

Timing: every function is called once to compile (discarded); then, `repeats` times in turn, the
no-closure rollout, each case's rollout and each case's network functions are called, and the
fastest call of each is kept. Interleaving exposes the numerator and the denominator of a ratio
to the same load, and the fastest call is the least disturbed one: on a shared machine (2 cores,
other jobs) single timings vary by ±50 %.

Cost model (every benchmark compares a measured time with its floor). Per 5-step block the
coupled step must do one closure sample — the condition encoded once, NFE = 10 target-branch
evaluations — and 5 solver steps (closure H drops advection: a forward FFT of the closure and
an inverse one for ω per step), which at M = 100, 64² take ≈ 3 ms on a CPU against ≈ 1 s for ONE
P-CDM score evaluation. So `network_ratio` is ≈ 1 when the fused step costs just its network
evaluations; a ratio near 5 would mean the sampler ran on every step (the `lax.cond` turned into
a select under vmap), one near 1 + 9 × encode / network (≈ 1.6 for P-CDM) that the condition was
re-encoded at every sampler step. And the solver with closure costs ≈ `network_seconds / 5` per
step: `no_closure_ratio ≈ network_seconds / (5 × no-closure step)`.

Cases (`CASES`): paper B's P-CDM ("pcdm") and L-CDM ("lcdm": the ω-encoder and the latent FNO's
condition branch once, NFE latent-score evaluations on the 16×16 latent (`chained`), the target
decoder once). Another closure model is one more `CoupledCase` factory: its name, the
`ClosureSource` the coupled step samples, and its `network`. The study configs the cases build
their models from are passed in (`configs`, by name, `CONFIGS`): paper_b and paper_b_lcdm_joint.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from closurejax.benchmarks.floor import make_fft_chain
from closurejax.benchmarks.records import BenchRecord, Configs, Group, record, study_config
from closurejax.diffusion import conditional
from closurejax.physics import initial_conditions
from closurejax.physics import navier_stokes as ns
from closurejax.simulation import coupled

__all__ = [
    "CASES",
    "CONFIGS",
    "GROUPS",
    "PAPER",
    "CoupledCase",
    "NetworkCalls",
    "Sizes",
    "chained",
    "coupled_benchmarks",
    "floor_chains",
    "fastest_interleaved",
    "pcdm_case",
    "pcdm_network",
    "sizes",
]

PAPER = {
    "members": 100,
    "steps": 20_000,
    "every": 5,
    "reuse_noise": 5e-5,
    # paper B's reported runtimes of that run on one GPU (arXiv 2506.20771)
    "gpu_seconds": {"pcdm": 904.0, "lcdm": 325.0, "none": 1.8},
}
"""Paper B's online run (arXiv 2506.20771): the setting `paper_run_seconds` projects to."""

NETWORK_RATIO_TARGET = 1.1
NONE_FLOOR_RATIO_TARGET = 1.5
"""Target of `coupled/none/m100/floor_ratio`: the no-closure step within 1.5× of its counted
work (`CoupledStep.cost`)."""


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What one run of the group measures.

    Attributes:
      n: grid points per side.
      members: ensemble sizes M.
      steps: solver steps K per timed rollout, per M (multiples of `PAPER["every"]`).
      baseline_steps: steps per timed rollout of the no-closure and solver-alone runs and their
        floor, per M: many more, since a step of theirs costs microseconds and a rollout call has
        a fixed cost of its own (K = 5 at M = 100 measured the call, not the step: 3.1 ms per
        step against 1.6 ms over 200 steps).
      repeats: timed rounds per M (after one compiling call of each function).
      tiny: build the tiny network of the quick run instead of paper B's.
    """

    n: int
    members: tuple[int, ...]
    steps: Mapping[int, int]
    repeats: Mapping[int, int]
    tiny: bool
    baseline_steps: Mapping[int, int]


def sizes(quick: bool) -> Sizes:
    """Full: 64², M ∈ (1, 100), K = 50 / 5 steps (baselines 2000 / 200). Quick: 16², M = 2,
    K = 10 (baselines 20), tiny network.

    At M = 100 one 5-step block (one closure sample) takes ≈ 10 s on a 2-core CPU, so the full
    run times one block there (3 rounds after a compiling call: ≈ 2 min with the network timings).
    """
    if quick:
        return Sizes(16, (2,), {2: 10}, {2: 2}, True, {2: 20})
    return Sizes(64, (1, 100), {1: 50, 100: 5}, {1: 10, 100: 3}, False, {1: 2000, 100: 200})


def fastest_interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Wall-clock seconds of each `fn()` (blocking on its outputs): the fastest of `repeats`.

    Each function is called once first (compilation; discarded); then `repeats` rounds call
    every function once, in order, so that all of them see the same load.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be ≥ 1")
    for fn in fns.values():
        jax.block_until_ready(fn())
    best = {label: float("inf") for label in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[label] = min(best[label], time.perf_counter() - start)
    return best


def chained(fn: Callable[..., jax.Array], count: int) -> Callable[..., jax.Array]:
    """jit of `count` evaluations of `fn(x, *args) -> [like x]` in one `lax.scan`, as a sampler.

    Each evaluation is fed the previous one's output (`x ← x + 1e-3 · fn(x, *args)`), so none
    can be hoisted out of the loop or merged, and, as in the sampler's scan, the loop reuses its
    buffers. (Timed as separate jitted calls, a P-CDM score evaluation at batch 100, 64², costs
    ≈ 20 % more on a CPU: every call touches ≈ 400 MB of freshly allocated memory — ≈ 10⁵ page
    faults — that the loop allocates once.) The update is one pass over `x`, negligible next to
    a network.
    """

    def run(x: jax.Array, *args: Any) -> jax.Array:
        def body(x: jax.Array, _: None) -> tuple[jax.Array, None]:
            return x + 1e-3 * fn(x, *args).astype(x.dtype), None

        return lax.scan(body, x, None, length=count)[0]

    return jax.jit(run)


@dataclasses.dataclass(frozen=True)
class NetworkCalls:
    """The network evaluations one closure sample of M members must do, ready to be timed.

    Attributes:
      parts: label → (evaluations per closure sample, fn, args): `fn(*args)` makes all of
        that label's evaluations at batch M (one call for an encoder; `chained` for the
        sampler's NFE score evaluations). Their times add up to `network_seconds`.
      extra: label → (fn, args): diagnostics timed alongside, recorded in the config only.
    """

    parts: Mapping[str, tuple[int, Callable[..., Any], tuple[Any, ...]]]
    extra: Mapping[str, tuple[Callable[..., Any], tuple[Any, ...]]] = dataclasses.field(
        default_factory=dict
    )


@dataclasses.dataclass(frozen=True)
class CoupledCase:
    """One closure model of the group.

    Attributes:
      name: the record-name part, e.g. "pcdm" (→ `coupled/pcdm/m100/…`).
      source: the `ClosureSource` of the coupled step (closure H; conditioning on ω only, so no
        reference fields are needed).
      network: `members -> NetworkCalls` of one closure sample at batch `members`.
      config: what to record about the model (architecture, NFE, sampler).
    """

    name: str
    source: coupled.ClosureSource
    network: Callable[[int], NetworkCalls]
    config: Mapping[str, Any]


CaseFactory = Callable[[Sizes, jax.Array, Configs], CoupledCase]
"""`factory(sizes, key, configs) -> CoupledCase`: builds the model for the run's grid (params from
key; the study config it needs from `configs`)."""


def _pcdm_model(
    configs: Configs, tiny: bool
) -> tuple[conditional.ClosureModel, Any, dict[str, Any]]:
    """Paper B's P-CDM (`configs["paper_b"]`: ω only; modes 6, width 40, embed 512; σ = 30) and
    its sampler config."""
    config = study_config(configs, "paper_b")
    if tiny:
        config["model"].update(width=4, modes=2, depth=1, embed_dim=8)
        config["sampler"]["num_steps"] = 2
    stats = {name: {"mean": 0.0, "std": 1.0} for name in (*config["model"]["conditions"], "target")}
    model = conditional.from_config(config, stats)
    sampler = conditional.sampler_from_config(config["sampler"])
    arch = {k: config["model"][k] for k in ("width", "modes", "depth", "embed_dim")}
    return model, sampler, arch


def pcdm_network(
    model: conditional.ClosureModel, params: Any, nfe: int, t: float, n: int
) -> Callable[[int], NetworkCalls]:
    """`network` of a physical-space score model: 1 × `encode` + NFE × score, at batch M.

    The functions are the ones `ClosureModel.sample` runs — `model.encode(params, cond)` once,
    then `model.score_fn(params, features)(x, t)` (the target-branch `denoise` forward and its
    output scaling) NFE times in a loop (`chained`) — jitted, on `[M, n, n]` inputs (features
    `[M, C, n, n]`, times `[M]`). Extra: `score_single_call`, one score evaluation as a jitted
    call of its own.
    """
    encode = jax.jit(model.encode)
    score = jax.jit(lambda p, f, x, tau: model.score_fn(p, f)(x, tau))
    scores = chained(lambda x, p, f, tau: model.score_fn(p, f)(x, tau), nfe)

    def calls(members: int) -> NetworkCalls:
        key = jax.random.PRNGKey(members)
        cond = {
            name: jax.random.normal(jax.random.fold_in(key, i), (members, n, n))
            for i, name in enumerate(model.condition_names)
        }
        features = encode(params, cond)
        x = jax.random.normal(key, (members, n, n))
        tau = jnp.full((members,), t, jnp.float32)
        return NetworkCalls(
            parts={
                "encode": (1, encode, (params, cond)),
                "score": (nfe, scores, (x, params, features, tau)),
            },
            extra={"score_single_call": (score, (params, features, x, tau))},
        )

    return calls


def _diffusion_case(
    name: str,
    model: Any,
    sampler: Any,
    arch: Mapping[str, Any],
    network: Callable[..., Callable[[int], NetworkCalls]],
    sz: Sizes,
    key: jax.Array,
) -> CoupledCase:
    """A diffusion closure model (untrained parameters from `key`: timing only) as a
    `DiffusionClosure`; `network(model, params, nfe, t, n)` describes its evaluations."""
    params = jax.jit(model.init, static_argnums=1)(key, sz.n)
    source = coupled.DiffusionClosure(model, params, sampler)
    t_mid = 0.5 * (sampler.t_min + sampler.t_max)
    config = {
        **arch,
        "nfe": sampler.nfe,
        "sampler": sampler.name,
        "sampler_steps": sampler.num_steps,
        "num_params": int(sum(np.size(p) for p in jax.tree.leaves(params))),
    }
    return CoupledCase(name, source, network(model, params, sampler.nfe, t_mid, sz.n), config)


def pcdm_case(sz: Sizes, key: jax.Array, configs: Configs) -> CoupledCase:
    """Paper B's P-CDM as a `DiffusionClosure` (untrained: timing only; `configs["paper_b"]`)."""
    return _diffusion_case("pcdm", *_pcdm_model(configs, sz.tiny), pcdm_network, sz, key)


def _lcdm_model(configs: Configs, tiny: bool) -> tuple[Any, Any, dict[str, Any]]:
    """Paper B's L-CDM (`configs["paper_b_lcdm_joint"]`: two autoencoders 64² → 1×16×16, latent
    FNO modes 4, width 20) and its sampler config."""
    from closurejax.diffusion import latent_model

    config = study_config(configs, "paper_b_lcdm_joint")
    if tiny:
        config["latent"].update(
            ae_channels=(4, 8), ae_groups=4, ae_num_heads=1, width=4, modes=2, depth=1, embed_dim=8
        )
        config["sampler"]["num_steps"] = 2
    stats = {name: {"mean": 0.0, "std": 1.0} for name in ("omega", "target")}
    model = latent_model.from_config(config, stats)
    sampler = conditional.sampler_from_config(config["sampler"])
    arch = {
        f"latent_{k}": config["latent"][k]
        for k in ("ae_channels", "ae_attention", "width", "modes", "depth", "embed_dim")
    }
    return model, sampler, arch


def lcdm_network(
    model: Any, params: Any, nfe: int, t: float, n: int
) -> Callable[[int], NetworkCalls]:
    """`network` of the latent model: 1 × (ω encoder + latent condition branch) + NFE × latent
    score + 1 × target decoder, at batch M — the functions `LatentDiffusionModel.sample` runs."""

    def encode_fn(p: Any, w: jax.Array) -> jax.Array:
        return model.condition_features(p["score"], model.encode(p, "omega", w))

    encode = jax.jit(encode_fn)
    decode = jax.jit(lambda p, z: model.decode(p, "target", z))
    scores = chained(lambda z, p, f, tau: model.score_fn(p["score"], f)(z, tau), nfe)
    m = model.latent_size(n)

    def calls(members: int) -> NetworkCalls:
        key = jax.random.PRNGKey(members)
        omega = jax.random.normal(key, (members, n, n))
        features = encode(params, omega)
        z = jax.random.normal(jax.random.fold_in(key, 1), (members, m, m))
        tau = jnp.full((members,), t, jnp.float32)
        return NetworkCalls(
            parts={
                "encode": (1, encode, (params, omega)),
                "score": (nfe, scores, (z, params, features, tau)),
                "decode": (1, decode, (params, z)),
            }
        )

    return calls


def lcdm_case(sz: Sizes, key: jax.Array, configs: Configs) -> CoupledCase:
    """Paper B's L-CDM as a `DiffusionClosure` (untrained: timing only;
    `configs["paper_b_lcdm_joint"]`)."""
    return _diffusion_case("lcdm", *_lcdm_model(configs, sz.tiny), lcdm_network, sz, key)


CASES: tuple[CaseFactory, ...] = (pcdm_case, lcdm_case)
"""The closure models the group times: paper B's P-CDM and L-CDM."""


def floor_chains(
    step: coupled.CoupledStep, members: int, steps: int
) -> dict[str, Callable[[], Any]]:
    """Timed functions whose summed time is the floor of `steps` coupled steps of `members`:
    per branch of `step.cost` with any work, a `fft_floor` chain of that branch's transforms and
    normals on `[members, n, n]`, run for the number of steps that take the branch (1 in every
    `step.every` samples, the rest reuse). Returns `{branch: fn}`."""
    n = step.solver.size
    counts = {"sample": steps // step.every, "reuse": steps - steps // step.every}
    shape = (members, n, n)
    out = {}
    for branch, cost in step.cost.items():
        if counts[branch] == 0 or cost.forward + cost.inverse + cost.normals == 0:
            continue
        chain = make_fft_chain(
            shape, cost.forward, cost.inverse, counts[branch], normals=cost.normals
        )
        r = jax.random.normal(jax.random.PRNGKey(0), shape)
        c = jnp.fft.rfft2(r)
        out[branch] = lambda chain=chain, r=r, c=c: chain(r, c)
    return out


def _flow(n: int) -> ns.FlowParams:
    """Paper A/B's flow (ν = 1e-3, dt = 1e-3, diagonal forcing, σ = 5e-5), noise band < n/2."""
    return ns.FlowParams(noise_modes=min(ns.FlowParams().noise_modes, n // 2 - 1))


def _initial_carry(solver: ns.Solver, members: int, key: jax.Array) -> coupled.CoupledCarry:
    """M copies of one Gaussian-random-field state (paper B: an ensemble from one IC)."""
    omega = jax.jit(initial_conditions.gaussian_random_field, static_argnums=1)(key, solver.size)
    state = solver.initial_state(jnp.broadcast_to(omega, (members, *omega.shape)))
    return coupled.initial_carry(solver, state)


def _rollout(
    step: coupled.CoupledStep, carry: coupled.CoupledCarry, steps: int
) -> tuple[Callable[[], Any], list[jax.Array]]:
    """(`run()`: an `ensemble_rollout` of `steps` steps, its last `first_nonfinite_step` [M])."""
    key = jax.random.PRNGKey(1)
    last: list[jax.Array] = []

    def run() -> Any:
        final, _, report = coupled.ensemble_rollout(step, carry, key, steps, steps)
        last[:] = [report["first_nonfinite_step"]]
        return final, last[0]

    return run, last


def coupled_benchmarks(
    quick: bool, configs: Configs, cases: Sequence[CaseFactory] | None = None
) -> list[BenchRecord]:
    """Group "coupled"; see the module docstring. `quick`: 16², M = 2, a tiny network.

    Args:
      quick: tiny sizes for tests (seconds on a CPU).
      configs: the study configs the cases build their models from, by name (`CONFIGS`).
      cases: closure-model factories (default `CASES`: P-CDM and L-CDM).

    Returns:
      The records, per M: the no-closure baseline, then every case.
    """
    sz = sizes(quick)
    every, reuse = PAPER["every"], PAPER["reuse_noise"]
    key = jax.random.PRNGKey(0)
    factories = CASES if cases is None else cases
    built = [
        factory(sz, jax.random.fold_in(key, i), configs) for i, factory in enumerate(factories)
    ]
    names = [case.name for case in built]
    if {"none", "dns"} & set(names) or len(set(names)) != len(names):
        raise ValueError(f"case names must be distinct and not 'none' or 'dns', got {names}")
    flow = _flow(sz.n)
    solver_h = ns.make_solver(flow, sz.n, closure="H")
    # the papers' "without closure" run: the closure-H solver with the zero field (+ reuse noise)
    baseline = coupled.make_coupled_step(solver_h, coupled.NoClosure(), every, reuse)
    solver_dns = ns.make_solver(flow, sz.n)  # the solver alone: the full step at the coarse grid
    dns_step = coupled.make_coupled_step(solver_dns, coupled.NoClosure(), every, reuse)
    paper_member_steps = PAPER["members"] * PAPER["steps"]
    out: list[BenchRecord] = []
    for members in sz.members:
        steps, repeats = sz.steps[members], sz.repeats[members]
        base_steps = sz.baseline_steps[members]
        for k in (steps, base_steps):
            if k % every:
                raise ValueError(f"steps={k} for M={members} must be a multiple of every={every}")
        common = {"n": sz.n, "members": members, "steps": steps, "repeats": repeats}
        base_common = {**common, "steps": base_steps}
        carry_h = _initial_carry(solver_h, members, key)
        fns: dict[str, Callable[[], Any]] = {}
        fns["none"], _ = _rollout(baseline, carry_h, base_steps)
        dns = _initial_carry(solver_dns, members, key)
        fns["dns"], _ = _rollout(dns_step, dns, base_steps)
        floor_fns = floor_chains(baseline, members, base_steps)
        fns.update({f"none/floor/{branch}": fn for branch, fn in floor_fns.items()})
        networks, reports = {}, {}
        for case in built:
            step = coupled.make_coupled_step(solver_h, case.source, every, reuse)
            fns[case.name], reports[case.name] = _rollout(step, carry_h, steps)
            networks[case.name] = calls = case.network(members)
            for label, (_, fn, args) in calls.parts.items():
                fns[f"{case.name}/{label}"] = lambda fn=fn, args=args: fn(*args)
            for label, (fn, args) in calls.extra.items():
                fns[f"{case.name}/{label}"] = lambda fn=fn, args=args: fn(*args)
        seconds = fastest_interleaved(fns, repeats)

        none_step = seconds["none"] / base_steps
        floor = sum(seconds[f"none/floor/{branch}"] for branch in floor_fns) / base_steps
        solver_step = seconds["dns"] / base_steps / members
        paper = {"paper_gpu_seconds": PAPER["gpu_seconds"]["none"], **base_common}
        floor_config = {
            **base_common,
            "cost_per_member": {b: c._asdict() for b, c in baseline.cost.items()},
            "step_seconds": none_step,
            "floor_step_seconds": floor,
            "solver_member_step_seconds": solver_step,
        }
        prefix = f"coupled/none/m{members}"
        out += [
            record(f"{prefix}/step_seconds", none_step, "s", config=base_common),
            record(f"{prefix}/member_step_seconds", none_step / members, "s", config=floor_config),
            record(
                f"coupled/dns/m{members}/member_step_seconds", solver_step, "s", config=base_common
            ),
            record(
                f"{prefix}/floor_ratio",
                none_step / floor if floor > 0 else float("nan"),  # no counted work: no floor
                "ratio",
                target=NONE_FLOOR_RATIO_TARGET if members == PAPER["members"] else None,
                config=floor_config,
            ),
            record(
                f"{prefix}/paper_run_seconds",
                none_step / members * paper_member_steps,
                "s",
                config=paper,
            ),
        ]
        for case in built:
            step_seconds = seconds[case.name] / steps
            calls = networks[case.name]
            parts = {label: seconds[f"{case.name}/{label}"] for label in calls.parts}
            network = sum(parts.values())
            breakdown: dict[str, Any] = {}
            for label, (count, _, _) in calls.parts.items():
                breakdown[f"{label}_calls"] = count
                breakdown[f"{label}_seconds"] = parts[label] / count
            for label in calls.extra:
                breakdown[f"{label}_seconds"] = seconds[f"{case.name}/{label}"]
            bad = int(jnp.sum(reports[case.name][0] >= 0))
            config = {
                **common,
                **case.config,
                "every": every,
                "reuse_noise": reuse,
                "nonfinite_members": bad,
                "step_seconds": step_seconds,
                "no_closure_step_seconds": none_step,
                "block_seconds": every * step_seconds,
                "network_seconds": network,
                **breakdown,
            }
            prefix = f"coupled/{case.name}/m{members}"
            paper_gpu = PAPER["gpu_seconds"].get(case.name)
            out += [
                record(f"{prefix}/step_seconds", step_seconds, "s", config=config),
                record(f"{prefix}/member_step_seconds", step_seconds / members, "s", config=config),
                record(
                    f"{prefix}/no_closure_ratio", step_seconds / none_step, "ratio", config=config
                ),
                record(f"{prefix}/network_seconds", network, "s", config=config),
                record(
                    f"{prefix}/network_ratio",
                    every * step_seconds / network,
                    "ratio",
                    target=NETWORK_RATIO_TARGET,
                    config=config,
                ),
                record(
                    f"{prefix}/paper_run_seconds",
                    step_seconds / members * paper_member_steps,
                    "s",
                    config={**config, "paper_gpu_seconds": paper_gpu},
                ),
            ]
    return out


CONFIGS: dict[str, tuple[str, ...]] = {"coupled": ("paper_b", "paper_b_lcdm_joint")}
"""The study configs the group needs, by name (`Configs`): those of the default `CASES`."""
GROUPS: dict[str, Group] = {"coupled": coupled_benchmarks}
"""The group of this module by name."""
