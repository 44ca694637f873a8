"""Online closure simulation: the coarse solver and a closure source fused into ONE jitted step.

Paper A's online use (arXiv 2408.02965, online use): a 64² solver runs with a closure term (G, H, or
the LES term Π) supplied by a model instead of the resolved physics. The closure is *sampled*
every k = 5 steps; in between the last sample is reused plus N(0, (5e-5)²) noise, drawn fresh each
step (and not accumulated: the carry keeps the last sample itself). Sparse measurements the model
conditions on come from the reference trajectory, step by step.

Pieces:

* closure sources — frozen dataclasses (their `params` become the leaves of the step pytree, so a
  jitted rollout takes the network weights as arguments rather than baking them in as
  constants). Each has a `kind` and a pure `closure(params, key, omega [n, n], context) -> [n, n]`
  for ONE member (ensembles come from vmap): `NoClosure` (the papers' "without closure" run:
  zero field), `ExactClosure` (the exact G or H of the current state and step key; with it the
  coupled run reproduces the full solver), `ReferenceClosure` (a field of the context, e.g. the
  reference trajectory's exact term), `Smagorinsky` (Π estimate for closure "Pi"),
  `RegressionClosure` (deterministic FNO baseline) and `DiffusionClosure` (one conditional sample
  per call, papers A and B).
* `make_coupled_step(solver, source, every, reuse_noise) -> CoupledStep`, a callable pytree
  `step(carry, key, context=None) -> carry` whose sample/reuse switch is a `lax.cond` on
  `state.step % every == 0`: one compiled function holds solver and sampler, and only the taken
  branch runs (the sampler costs nothing on reuse steps).
* `rollout` (lax.scan) and `ensemble_rollout` (vmap over members, optionally sharded over a
  `("data",)` mesh) with in-graph blow-up detection: once a step yields a non-finite state or
  closure, the member's carry is frozen at its last finite state and the step is reported.
  The learned sources' networks fold the member axis of the vmap into their own batch
  (`closurejax.models.chunking.fold_vmap`), so the network of an ensemble step runs as one batched
  call on cache-sized slices — as fast as the network alone (P-CDM, 100 members on the 2-core
  CPU: 0.50 s per step, 1.3 s before).

Keys: `key` given to a step is that step's key, `fold_in(run key, state.step)` (as
`navier_stokes.step_key`). The solver draws this step's physical noise from it (closure "Pi"), and
so does `ExactClosure` (H and G contain the step's noise σẆ). Sources that need randomness of
their own derive it with `fold_in(key, stream)` (distinct streams for the sampler and the reuse
noise), so no key is ever used for two different draws.

Sampler noise in time (`sampler_noise`): with "fresh" (the papers) every sampling step draws the
sampler's noise anew, so a member's closure samples are independent in time; with "member" the
sampler's noise is drawn once per member — its key is `split(member run key)[1]`, shared by every
sampling step of that member — so a member's samples change only as its state and conditions do.
Why it matters: independent draws average out over the ≈ 1/(every·dt) samples per unit time that a
trajectory integrates (the spread of the ensemble grows like a random walk), whereas the model's
error and the truth's unresolved part are correlated in time; the fresh ensemble is therefore
under-dispersed online even when each sample is calibrated offline. Measured on `paper_a_h_cpu`
(its earlier model, trained with the papers' output/σ(t); 64², 8 members, t = 30 → 32 s, 10-step
Euler–Maruyama): spread–skill 0.034 / 0.021 at t = 31 / 32 with "fresh", 0.49 / 0.43 with
"member"; ensemble-mean error at t = 32 0.0226 → 0.0211, CRPS 0.0189 → 0.0140.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh

from closurejax.diffusion.samplers import SamplerConfig
from closurejax.models.regression import RegressionModel
from closurejax.parallel import replicate, shard_batch
from closurejax.physics import closures
from closurejax.physics.grid import SpectralGrid, white_noise_hat
from closurejax.physics.navier_stokes import Solver, State, StepCost, step_key

__all__ = [
    "ClosureSource",
    "CoupledCarry",
    "CoupledStep",
    "DiffusionClosure",
    "ExactClosure",
    "NoClosure",
    "ReferenceClosure",
    "RegressionClosure",
    "Smagorinsky",
    "ensemble_rollout",
    "initial_carry",
    "make_coupled_step",
    "rollout",
]

Context = Mapping[str, jax.Array]

DIFFUSION_KINDS = ("score", "latent")
"""Model kinds a `DiffusionClosure` samples from."""

# fold_in streams of a step key (the key itself is the physical noise's: solver / exact closure).
_SAMPLER_STREAM = 1
_REUSE_STREAM = 2

SAMPLER_NOISE = ("fresh", "member")
"""`sampler_noise` of `make_coupled_step`: a new sampler draw at every sampling step, or one per
member (module docstring)."""


@runtime_checkable
class ClosureSource(Protocol):
    """Anything that supplies a closure field for one member.

    Attributes:
      kind: a short name ("none", "exact", "reference", "smagorinsky", "regression", "diffusion").
      params: the pytree of learnable parameters (None for parameter-free sources).
    """

    kind: str
    params: Any

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """Closure field `[n, n]` (physical units) for vorticity `omega` `[n, n]` (physical)."""
        ...


@dataclasses.dataclass(frozen=True)
class NoClosure:
    """The "without closure" baseline: a zero field (the solver minus the modelled term).

    With a `Solver(closure="none")` nothing is supplied at all; with "H" / "G" / "Pi" the zero
    field drops the term the closure stands for (arXiv 2408.02965, its "without closure" runs).
    """

    params: Any = None
    kind: str = "none"

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """Zeros like `omega` `[n, n]`."""
        return jnp.zeros_like(omega)


@dataclasses.dataclass(frozen=True)
class ExactClosure:
    """The exact G or H of the current coarse state for this step's key (`physics.closures`).

    Coupled with a `Solver(closure=target)` it reproduces the full solver's trajectory: H and G
    contain the step's noise σẆ, drawn from the step key exactly as `Solver.step` draws it.
    """

    solver: Solver
    target: str = "H"
    params: Any = None
    kind: str = "exact"

    def __post_init__(self) -> None:
        if self.target not in ("G", "H"):
            raise ValueError(f"ExactClosure.target={self.target!r} is invalid; allowed: ('G', 'H')")

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """G or H `[n, n]` of the state with vorticity `omega` `[n, n]`."""
        state = State(self.solver.grid.to_spectral(omega), jnp.zeros((), jnp.int32))
        return closures.exact_closure(self.solver, state, key, self.target)


@dataclasses.dataclass(frozen=True)
class ReferenceClosure:
    """The closure read from the context: `context[name]` `[n, n]` (e.g. a reference's exact H)."""

    name: str = "target"
    params: Any = None
    kind: str = "reference"

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """`context[name]` `[n, n]`."""
        if self.name not in context:
            raise ValueError(
                f"ReferenceClosure needs context field {self.name!r}; the rollout's reference "
                f"supplies {sorted(context)}"
            )
        return context[self.name]


@dataclasses.dataclass(frozen=True)
class Smagorinsky:
    """Smagorinsky's estimate of the sub-grid term Π from ω̄ (`closures.smagorinsky`).

    For a `Solver(closure="Pi")`, which subtracts the field it is given (∂ω̄/∂t = … − Π), so the
    step adds the dissipative −Π_smag.
    """

    grid: SpectralGrid
    cs: float = 0.16
    delta: float | None = None
    params: Any = None
    kind: str = "smagorinsky"

    def __post_init__(self) -> None:
        if not self.cs > 0:
            raise ValueError(f"Smagorinsky.cs={self.cs!r} is invalid; allowed: cs > 0")

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """Π_smag `[n, n]` of ω̄ = `omega` `[n, n]`."""
        return closures.smagorinsky(omega, self.grid, self.cs, self.delta)


def _conditions(model: Any, omega: jax.Array, context: Context) -> dict[str, jax.Array]:
    """The model's conditions `{name: [1, n, n]}`: "omega" from the state, the rest from context."""
    fields = {"omega": omega, **context}
    missing = [n for n in model.condition_names if n not in fields]
    if missing:
        raise ValueError(
            f"the closure model conditions on {list(model.condition_names)}, but {missing} is "
            f"neither 'omega' nor in the rollout's reference ({sorted(context)})"
        )
    return {n: fields[n][None] for n in model.condition_names}


@dataclasses.dataclass(frozen=True)
class RegressionClosure:
    """The deterministic FNO baseline: `model.predict(params, cond)` (arXiv 2408.02965)."""

    model: RegressionModel
    params: Any
    kind: str = "regression"

    def __post_init__(self) -> None:
        if self.model.kind != "regression":
            raise ValueError(
                f"RegressionClosure needs a model of kind 'regression', got {self.model.kind!r}"
            )

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """Prediction `[n, n]` conditioned on `omega` `[n, n]` and the context fields."""
        return self.model.predict(params, _conditions(self.model, omega, context))[0]


@dataclasses.dataclass(frozen=True)
class DiffusionClosure:
    """One sample of a conditional diffusion model per call: the physical-space score model
    (papers A and B, P-CDM; `ClosureModel`, kind "score") or the latent model (paper B, L-CDM;
    kind "latent"). Either exposes `condition_names` and `sample(params, key, cond, sampler) ->
    [B, n, n]`.

    The sampler's key is `fold_in(step key, 1)`, independent of the physical noise of the step.
    """

    model: Any
    params: Any
    sampler: SamplerConfig
    kind: str = "diffusion"

    def __post_init__(self) -> None:
        if getattr(self.model, "kind", None) not in DIFFUSION_KINDS:
            raise ValueError(
                f"DiffusionClosure needs a model of kind {DIFFUSION_KINDS}, got "
                f"{getattr(self.model, 'kind', None)!r}"
            )

    def closure(self, params: Any, key: jax.Array, omega: jax.Array, context: Context) -> jax.Array:
        """A sample `[n, n]` of p(U | omega, context)."""
        cond = _conditions(self.model, omega, context)
        sample_key = jax.random.fold_in(key, _SAMPLER_STREAM)
        return self.model.sample(params, sample_key, cond, self.sampler)[0]


class CoupledCarry(NamedTuple):
    """Carry of the coupled step.

    The closure fields are kept in spectral space, where the solver uses them: a reuse step then
    needs no transform at all (its noise is drawn spectrally, `grid.white_noise_hat`).

    Attributes:
      state: solver state (`omega_hat [n, n//2+1]`, `step`).
      sample_hat: the last closure sample, rfft2 `[n, n//2+1]` complex (reused between sampling
        steps; `solver.grid.to_physical` gives it in physical units `[n, n]`).
      closure_hat: the closure applied in the last step (sample plus reuse noise), `[n, n//2+1]`.
    """

    state: State
    sample_hat: jax.Array
    closure_hat: jax.Array


def initial_carry(solver: Solver, state: State) -> CoupledCarry:
    """A carry for `state` with zero closure fields `[..., n, n//2+1]` (leading axes follow
    `state`)."""
    zeros = jnp.zeros_like(state.omega_hat)
    return CoupledCarry(state, zeros, zeros)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["params"],
    meta_fields=["solver", "source", "every", "reuse_noise", "sampler_noise"],
)
@dataclasses.dataclass(frozen=True)
class CoupledStep:
    """The fused online step; see `make_coupled_step`.

    A pytree whose only leaves are `params` (the source's parameters, taken out of `source`), so
    a jitted rollout takes the weights as arguments instead of embedding them as constants;
    `source` (with `params=None` where it is a dataclass) is static and must be hashable.
    """

    solver: Solver
    source: Any
    every: int
    reuse_noise: float
    params: Any = None
    sampler_noise: str = "fresh"

    def __call__(
        self,
        carry: CoupledCarry,
        key: jax.Array,
        context: Context | None = None,
        sample: jax.Array | bool | None = None,
        member_key: jax.Array | None = None,
    ) -> CoupledCarry:
        """One step of one member.

        Args:
          carry: `CoupledCarry` of one member.
          key: this step's key, `fold_in(run key, carry.state.step)`.
          context: this step's extra condition fields `{name: [n, n]}` (e.g. sparse measurements
            of the reference trajectory).
          sample: whether to sample the closure this step: a Python bool (the branch is chosen
            while tracing: the rollouts' scheduled save blocks), or a scalar bool array, possibly
            traced (a `lax.cond`); defaults to `carry.state.step % every == 0`. Rollouts pass an
            un-batched flag so that under vmap the `lax.cond` stays a branch rather than becoming
            a select.
          member_key: the member's run key (rollouts pass it); needed by `sampler_noise`
            "member", whose sampler key `split(member_key)[1]` is the same at every step.

        Returns:
          The carry after the step.
        """
        solver, source = self.solver, self.source
        source_key = key
        if self.sampler_noise == "member":
            if member_key is None:
                raise ValueError(
                    "sampler_noise='member' needs the member's run key: pass member_key (the "
                    "rollouts do)"
                )
            source_key = jax.random.split(member_key)[1]
        state = carry.state
        context = {} if context is None else dict(context)
        if sample is None:
            sample = state.step % self.every == 0
        if solver.closure == "none":
            return CoupledCarry(solver.step(state, key), carry.sample_hat, carry.closure_hat)
        grid, dtype = solver.grid, jnp.real(state.omega_hat).dtype
        complex_dtype = state.omega_hat.dtype

        def fresh(_: None) -> tuple[jax.Array, jax.Array]:
            if isinstance(source, NoClosure):  # the zero field: no transform at all
                zero = jnp.zeros_like(state.omega_hat)
                return zero, zero
            # one inverse transform for the source's ω, one forward for its sample
            omega = solver.vorticity(state)
            new = source.closure(self.params, source_key, omega, context).astype(dtype)
            new_hat = grid.to_spectral(new).astype(complex_dtype)
            return new_hat, new_hat

        def reuse(_: None) -> tuple[jax.Array, jax.Array]:
            # no transform: the N(0, reuse_noise²) point noise is drawn in spectral space
            old = carry.sample_hat.astype(complex_dtype)
            if self.reuse_noise == 0:
                return old, old
            noise = white_noise_hat(jax.random.fold_in(key, _REUSE_STREAM), grid, dtype)
            return old, old + jnp.asarray(self.reuse_noise, dtype) * noise

        if isinstance(sample, bool):
            new_sample, applied = fresh(None) if sample else reuse(None)
        else:
            new_sample, applied = lax.cond(jnp.asarray(sample), fresh, reuse, None)
        return CoupledCarry(solver.step_hat(state, key, applied), new_sample, applied)

    @property
    def cost(self) -> dict[str, StepCost]:
        """The least solver work of the step's two branches for one member, besides the source's
        own (a network's FLOPs are counted by the benchmarks that time it):

        * "sample": an inverse transform of ω̂ for the source (none for `NoClosure`, which
          ignores ω), a forward transform of its physical sample (none for `NoClosure`: zero),
          plus the solver's `step_hat` work (closure "none": the full `Solver.step_cost`);
        * "reuse": the solver's `step_hat` work and n² normals for the reuse noise (none when
          `reuse_noise` = 0); the noise is drawn in spectral space, so no transform.

        With closure H `step_hat` itself does no transform and draws nothing (advection and the
        noise σẆ are the supplied term); with G it advects (4 inverse + 1 forward transforms per
        stage), with Π it advects and draws the forcing band.
        """
        solver = self.solver
        base = solver.step_cost
        if solver.closure == "none":
            return {"sample": base, "reuse": base}
        hat = base._replace(forward=base.forward - 1)  # step_hat: no transform of the closure
        needs_omega = not isinstance(self.source, NoClosure)
        sample = hat._replace(forward=hat.forward + needs_omega, inverse=hat.inverse + needs_omega)
        noise = solver.size**2 if self.reuse_noise > 0 else 0
        return {"sample": sample, "reuse": hat._replace(normals=hat.normals + noise)}


def make_coupled_step(
    solver: Solver,
    source: ClosureSource,
    every: int = 5,
    reuse_noise: float = 5e-5,
    sampler_noise: str = "fresh",
) -> CoupledStep:
    """The online step: solver + closure source, sampled every `every` steps (arXiv 2408.02965).

    Args:
      solver: the coarse `Solver`; its `closure` ("none", "H", "G", "Pi") says which term the
        source supplies.
      source: a `ClosureSource`; `NoClosure` for `Solver(closure="none")`.
      every: sample the closure on steps with `state.step % every == 0` (k = 5 in the papers).
      reuse_noise: std of the N(0, reuse_noise²) noise added to the reused sample on the other
        steps (5e-5 in the papers); 0 reuses it unchanged.
      sampler_noise: "fresh" (the papers: a new sampler draw at every sampling step) or "member"
        (one draw per member, reused at every sampling step; module docstring) — for a
        `DiffusionClosure` source only.

    Returns:
      `CoupledStep`, `step(carry, key, context=None) -> carry` (pure, jit/vmap-able).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r} is invalid; allowed: an int ≥ 1")
    if not reuse_noise >= 0:
        raise ValueError(f"reuse_noise={reuse_noise!r} is invalid; allowed: ≥ 0")
    if not isinstance(source, ClosureSource):
        raise TypeError(f"source must be a ClosureSource (kind, params, closure), got {source!r}")
    if sampler_noise not in SAMPLER_NOISE:
        raise ValueError(f"sampler_noise={sampler_noise!r} is invalid; allowed: {SAMPLER_NOISE}")
    if sampler_noise == "member" and not isinstance(source, DiffusionClosure):
        raise ValueError(
            f"sampler_noise='member' fixes a diffusion sampler's noise per member; the source is "
            f"{source.kind!r} (its key is the step's physical noise or unused): use 'fresh'"
        )
    if solver.closure == "none" and source.kind != "none":
        raise ValueError(
            f"Solver(closure='none') takes no closure field, but the source is {source.kind!r}; "
            "use a solver with closure 'H', 'G' or 'Pi'"
        )
    if isinstance(source, ExactClosure) and source.target != solver.closure:
        raise ValueError(
            f"ExactClosure(target={source.target!r}) does not match Solver(closure="
            f"{solver.closure!r})"
        )
    if isinstance(source, Smagorinsky) and solver.closure != "Pi":
        raise ValueError(
            f"Smagorinsky estimates Π; use Solver(closure='Pi'), not {solver.closure!r}"
        )
    params = source.params
    if dataclasses.is_dataclass(source):
        source = dataclasses.replace(source, params=None)
    return CoupledStep(solver, source, every, float(reuse_noise), params, sampler_noise)


# --- rollouts --------------------------------------------------------------------------------


def _guarded(
    step: CoupledStep,
    carry: CoupledCarry,
    bad: jax.Array,
    run_keys: jax.Array,
    context: Context,
    sample: jax.Array,
    ensemble: bool,
) -> tuple[CoupledCarry, jax.Array]:
    """One step of every member (vmapped if `ensemble`); freezes a member's carry at its last
    finite state (`bad` `[M]` or `[]`: the first bad step, −1 while none).

    The freeze is a select over the whole carry (three full passes over it); it runs under a
    `lax.cond` on "any member bad", so a healthy ensemble pays only the finiteness check of ω̂
    (≈ 0.1 ms of the 1.6 ms no-closure step of 100 members at 64² on the development CPU).
    """

    def member(c: CoupledCarry, run_key: jax.Array) -> CoupledCarry:
        return step(c, step_key(run_key, c.state), context, sample, member_key=run_key)

    new = jax.vmap(member)(carry, run_keys) if ensemble else member(carry, run_keys)
    # The applied closure enters ω̂ unmasked, so a non-finite closure makes ω̂ non-finite too.
    ok = jnp.all(jnp.isfinite(new.state.omega_hat), axis=(-2, -1))
    bad = jnp.where((bad < 0) & ~ok, carry.state.step, bad)

    def freeze(_: None) -> CoupledCarry:
        keep_old = bad >= 0
        return jax.tree.map(
            lambda old, nw: jnp.where(
                keep_old.reshape(keep_old.shape + (1,) * (nw.ndim - keep_old.ndim)), old, nw
            ),
            carry,
            new,
        )

    carry = lax.cond(jnp.any(bad >= 0), freeze, lambda _: new, None)
    return carry, bad


def _check_reference(
    reference: Mapping[str, jax.Array] | None, num_steps: int, n: int
) -> dict[str, jax.Array]:
    if reference is None:
        return {}
    if not isinstance(reference, Mapping):
        raise TypeError(
            "reference must be a mapping {name: [num_steps, n, n]} (e.g. the reference's "
            f"'sparse_interpolated' fields) or None, got {type(reference).__name__}"
        )
    for name, value in reference.items():
        if tuple(value.shape) != (num_steps, n, n):
            raise ValueError(
                f"reference[{name!r}] has shape {tuple(value.shape)}; expected "
                f"(num_steps, n, n) = {(num_steps, n, n)}"
            )
    return dict(reference)


def _check_counts(num_steps: int, save_every: int) -> int:
    for name, value in (("num_steps", num_steps), ("save_every", save_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid; allowed: an int ≥ 1")
    if num_steps % save_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of save_every={save_every}")
    return num_steps // save_every


def phase_of(step: CoupledStep, carry: CoupledCarry) -> int | None:
    """`carry`'s step counter modulo `step.every` (its first member's) when it is known while
    tracing — a concrete carry, as `rollout` and `ensemble_rollout` are called — else None."""
    steps = carry.state.step
    if isinstance(steps, jax.core.Tracer):
        return None
    return int(jnp.ravel(steps)[0]) % step.every


def _schedule(phase: int, save_every: int, every: int) -> tuple[int, int, int]:
    """(leading reuse steps, full blocks of one sampling and `every` − 1 reuse steps, steps of a
    trailing partial block — its sampling step, then reuse steps) of a save block of `save_every`
    steps whose first step counter is ≡ `phase` mod `every` (step s samples iff s % every == 0)."""
    lead = min((every - phase) % every, save_every)
    blocks = (save_every - lead) // every
    return lead, blocks, save_every - lead - blocks * every


def _scheduled(
    step: CoupledStep,
    carry: CoupledCarry,
    run_keys: jax.Array,
    contexts: Context,
    schedule: tuple[int, int, int],
    ensemble: bool,
) -> CoupledCarry:
    """The steps of one save block with the sample/reuse pattern `schedule` (`_schedule`) fixed
    while tracing: no `lax.cond` per step and no non-finite guard (`_run` checks the block).
    `contexts`: the block's per-step context fields `{name: [save_every, n, n]}`."""
    lead, blocks, tail = schedule  # the tail: a partial block, its sampling step first
    every = step.every

    def one(c: CoupledCarry, context: Context, sample: bool) -> CoupledCarry:
        def member(cm: CoupledCarry, run_key: jax.Array) -> CoupledCarry:
            return step(cm, step_key(run_key, cm.state), context, sample, member_key=run_key)

        return jax.vmap(member)(c, run_keys) if ensemble else member(c, run_keys)

    def reuse_steps(c: CoupledCarry, ctx: Context, count: int) -> CoupledCarry:
        return lax.scan(lambda cc, x: (one(cc, x, False), None), c, ctx, length=count)[0]

    def part(start: int, stop: int) -> Context:
        return jax.tree.map(lambda a: a[start:stop], contexts)

    carry = reuse_steps(carry, part(0, lead), lead)
    body = jax.tree.map(
        lambda a: a.reshape(blocks, every, *a.shape[1:]), part(lead, lead + blocks * every)
    )

    def block(c: CoupledCarry, ctx: Context) -> tuple[CoupledCarry, None]:
        c = one(c, jax.tree.map(lambda a: a[0], ctx), True)
        return reuse_steps(c, jax.tree.map(lambda a: a[1:], ctx), every - 1), None

    carry = lax.scan(block, carry, body, length=blocks)[0] if blocks else carry
    if tail:
        rest = part(lead + blocks * every, lead + blocks * every + tail)
        carry = one(carry, jax.tree.map(lambda a: a[0], rest), True)
        carry = reuse_steps(carry, jax.tree.map(lambda a: a[1:], rest), tail - 1)
    return carry


@functools.partial(jax.jit, static_argnames=("num_steps", "save_every", "ensemble", "phase"))
def _run(
    step: CoupledStep,
    carry: CoupledCarry,
    run_keys: jax.Array,
    reference: dict[str, jax.Array],
    num_steps: int,
    save_every: int,
    ensemble: bool,
    phase: int | None = None,
) -> tuple[CoupledCarry, jax.Array, jax.Array]:
    """The scan shared by `rollout` and `ensemble_rollout` (members leading if `ensemble`).

    With `phase` (the first step counter modulo `step.every`, `phase_of`) and `save_every` a
    multiple of `step.every`, every save block has the same sample/reuse pattern, fixed while
    tracing (`_scheduled`), and is checked once at its end: if no member is non-finite there
    and none was frozen before, the block's result stands; otherwise the block is run again from
    its start step by step with the per-step guard (`_guarded`), which freezes a member at its
    last finite state and reports the step — the same result, as a non-finite ω̂ stays
    non-finite in every later step (each step's ω̂ holds its previous value with a non-zero
    factor). Per step this saves the sample/reuse `lax.cond` and the guard's select, whose
    output copies cost ≈ 0.3 ms of the 1.5 ms no-closure step of 100 members at 64² on the
    development CPU. The arithmetic is the same; XLA may fuse the two structures differently, so
    results agree to float rounding (bit for bit in that benchmark; one ulp in one mode of a
    single-member test run). Otherwise (`phase` None: a traced carry, or `save_every` not a
    multiple of `step.every`) every step takes the `lax.cond` and the guard.
    """
    blocks = num_steps // save_every
    observe = step.solver.vorticity
    if ensemble:
        start = carry.state.step[0]
        bad = jnp.full(carry.state.step.shape, -1, jnp.int32)
    else:
        start = carry.state.step
        bad = jnp.asarray(-1, jnp.int32)
    offsets = jnp.arange(num_steps, dtype=jnp.int32).reshape(blocks, save_every)
    contexts = jax.tree.map(lambda a: a.reshape(blocks, save_every, *a.shape[1:]), reference)

    def one_step(c: tuple[CoupledCarry, jax.Array], xs: Any) -> tuple[Any, None]:
        offset, context = xs
        sample = (start + offset) % step.every == 0  # un-batched: the cond stays a branch
        return _guarded(step, c[0], c[1], run_keys, context, sample, ensemble), None

    def guarded(c: tuple[CoupledCarry, jax.Array], xs: Any) -> tuple[CoupledCarry, jax.Array]:
        return lax.scan(one_step, c, xs)[0]

    if phase is None or save_every % step.every:
        block_steps = guarded
    else:
        schedule = _schedule(phase, save_every, step.every)

        def block_steps(
            c: tuple[CoupledCarry, jax.Array], xs: Any
        ) -> tuple[CoupledCarry, jax.Array]:
            new = _scheduled(step, c[0], run_keys, xs[1], schedule, ensemble)
            ok = jnp.all(jnp.isfinite(new.state.omega_hat), axis=(-2, -1))
            again = jnp.any(~ok | (c[1] >= 0))
            return lax.cond(again, lambda _: guarded(c, xs), lambda _: (new, c[1]), None)

    def block(c: tuple[CoupledCarry, jax.Array], xs: Any) -> tuple[Any, jax.Array]:
        c = block_steps(c, xs)
        return c, observe(c[0].state)

    (final, bad), snaps = lax.scan(block, (carry, bad), (offsets, contexts))
    first = observe(carry.state)
    if ensemble:
        snaps = jnp.concatenate([first[None], snaps]).swapaxes(0, 1)
    else:
        snaps = jnp.concatenate([first[None], snaps])
    return final, snaps, bad


def rollout(
    step: CoupledStep,
    carry: CoupledCarry,
    key: jax.Array,
    num_steps: int,
    save_every: int,
    reference: Mapping[str, jax.Array] | None = None,
) -> tuple[CoupledCarry, jax.Array, dict[str, jax.Array]]:
    """`num_steps` coupled steps of one member with lax.scan (one jit-compiled function).

    Step s (counter `carry.state.step + i`, i = 0 … num_steps−1) is keyed by `fold_in(key, s)`.

    Args:
      step: from `make_coupled_step`.
      carry: `CoupledCarry` of one member (`initial_carry`).
      key: the run key.
      num_steps: steps to take (a multiple of `save_every`).
      save_every: steps between snapshots.
      reference: per-step condition fields `{name: [num_steps, n, n]}`; entry i is the context
        of the rollout's i-th step (e.g. the reference's sparse measurements), or None.

    Returns:
      (final carry, vorticity snapshots `[num_steps // save_every + 1, n, n]` at steps
      0, save_every, … of the rollout (the initial state first), report) with
      `report["first_nonfinite_step"]`: the step counter from which the first step produced a
      non-finite state or closure, −1 if none. After it, the carry (and the snapshots) stay at
      the last finite state.
    """
    _check_counts(num_steps, save_every)
    if carry.state.step.ndim != 0:
        raise ValueError(
            f"rollout takes one member; the carry has members {carry.state.step.shape}: use "
            "ensemble_rollout"
        )
    reference = _check_reference(reference, num_steps, step.solver.size)
    phase = phase_of(step, carry)
    final, snaps, bad = _run(step, carry, key, reference, num_steps, save_every, False, phase)
    return final, snaps, {"first_nonfinite_step": bad}


def ensemble_rollout(
    step: CoupledStep,
    carry: CoupledCarry,
    key: jax.Array,
    num_steps: int,
    save_every: int,
    reference: Mapping[str, jax.Array] | None = None,
    mesh: Mesh | None = None,
) -> tuple[CoupledCarry, jax.Array, dict[str, jax.Array]]:
    """`rollout` of M members at once (vmap); member m is keyed by `fold_in(key, m)`.

    Member m equals `rollout(step, carry[m], fold_in(key, m), …)`. All members must start at the
    same step counter (the sample/reuse switch is shared, so it stays a branch under vmap).

    Args:
      carry: `CoupledCarry` with a leading member axis `[M, …]`.
      reference: as in `rollout`, shared by all members.
      mesh: if given, the member axis is sharded over its `"data"` axis (`parallel.shard_batch`;
        M must be a multiple of its device count) and the weights and reference are replicated.
        On several processes (after `jax.distributed.initialize`) every process passes the same
        global inputs and gets global outputs: read them with
        `jax.experimental.multihost_utils.process_allgather`.

    Returns:
      (final carry `[M, …]`, snapshots `[M, num_steps // save_every + 1, n, n]`, report with
      `first_nonfinite_step` `[M]`).
    """
    _check_counts(num_steps, save_every)
    steps = carry.state.step
    if steps.ndim != 1:
        raise ValueError(
            f"ensemble_rollout needs carry with one member axis; step has {steps.shape}"
        )
    if not isinstance(steps, jax.core.Tracer) and bool(jnp.any(steps != steps[0])):
        raise ValueError("all ensemble members must start at the same step counter")
    reference = _check_reference(reference, num_steps, step.solver.size)
    members = steps.shape[0]
    phase = phase_of(step, carry)
    keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(jnp.arange(members))
    if mesh is not None:
        carry, keys = shard_batch((carry, keys), mesh)
        step, reference = replicate((step, reference), mesh)  # e.g. weights pinned to one device
    final, snaps, bad = _run(step, carry, keys, reference, num_steps, save_every, True, phase)
    return final, snaps, {"first_nonfinite_step": bad}
