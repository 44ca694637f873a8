"""The study config schema: every section and field, and their defaults (`base_config`).

The defaults ARE paper A's H study (journal version, arXiv 2408.02965) at full scale. The values
of each study live in `experiments/configs/<study>.py`, whose `get_config()` starts from
`base_config()`, overrides what differs, and locks the result (`config.lock()`), so a typo in a
field name is an error, not a silent default. The library reads configs (each section is
validated where it is turned into an object, e.g. `closurejax.data.generate.DataSpec`) but never
imports `experiments/`: what a library function measures or builds from a named study's config is
passed in by its caller.
Fields:
  name: study name (recorded in every artefact).
  seed: master seed; trajectory i uses fold_in(PRNGKey(seed), i).
  physics: `closurejax.physics.navier_stokes.FlowParams` fields —
    viscosity ν (1e-3), dt (1e-3), length L (1), drag μ (0), forcing ("diagonal" |
    "kolmogorov" | "none"), forcing_amplitude (0.1), forcing_wavenumber (Kolmogorov k),
    noise_sigma σ (5e-5), noise_alpha α (0.005), noise_kappa κ (10), noise_modes (band of the
    noise draw, 12), dealias ("two_thirds"), max_cfl (bound on max|u|·dt/dx, 1.0).
  initial_condition: Gaussian random field alpha (2.5) and tau (7).
  data: `closurejax.data.generate.DataSpec` fields —
    fine_size (DNS grid, 256), coarse_size (64), stepper ("semi_implicit" | "cn_rk4"),
    closure ("G" | "H" | "Pi"), coarse_method ("subsample": the papers' stride subsampling, or
    "spectral" truncation), filter_name / filter_cutoff / filter_width / filter_width_points
    (the LES filter F of Π on the fine grid: "spectral" | "gaussian" | "box"),
    smagorinsky_cs (0.16), num_trajectories (100), num_test (test trajectories, the last ones),
    t_burn_in (20 s), t_end (40 s), snapshot_interval (0.1 s), sparse_stride (4),
    sparse_kernel (7), trajectories_per_chunk, zero_shot_sizes (extra resolutions stored for
    the test trajectories in `<workdir>/zero_shot`), dtype ("float32").
  model: the conditional FNO score network (closurejax.models.fno) — kind ("score": diffusion
    model; "regression": the deterministic MSE baseline with the same backbone), width (20),
    modes (8), depth (4 FNO layers per branch), embed_dim (256 Gaussian Fourier features),
    embed_scale (30), conditions (dataset arrays the model conditions on, e.g. ("omega",
    "sparse_interpolated"); "previous_target" adds the closure one snapshot earlier, the
    previous closure sample of the online solver), spectral_method ("auto" | "fft" | "dft"),
    batch_chunk (samples per slice when sampling or predicting, closurejax.models.chunking:
    "auto" — cache-sized slices on a CPU, the whole batch on accelerators —, an int, or None).
  latent: paper B's latent model (L-CDM; used when model.kind = "latent", closurejax.diffusion.
    latent_model; the model section then describes the P-CDM it is compared with, and
    model.conditions must be ("omega",)) — training_mode ("joint": one optimiser over both
    autoencoders and the latent score | "two_stage": autoencoders first for stage1_epochs, then the
    latent score on the frozen latents for training.num_epochs or num_steps), ae_channels ((64, 128,
    256): one downsampling per step, n² → (n/(f·2^L))², L = len − 1), ae_num_res_blocks (1; 0 =
    levels without ResBlocks), ae_attention (True), ae_num_heads (8), ae_groups (GroupNorm, 32),
    ae_stem ("conv": paper B's full-resolution Conv3x3 | "space_to_depth" | "strided": cost-designed
    stems, closurejax.models.autoencoder) and ae_stem_factor (f: 1 for "conv", 2 or 4 otherwise;
    named presets: closurejax.diffusion.latent_model.AE_PRESETS), latent_channels (1), width (20),
    modes (4), depth (4), embed_dim (256), embed_scale (30) of the latent FNO score network,
    loss_weights ((w_H, w_ω, w_s, w_KL) = (10, 0.1, 0.1, 0.01) of the joint loss), stage1_weights
    ((w_H, w_ω, w_KL) = (10, 0.1, 0) of the two-stage autoencoder stage), stage1_epochs (500),
    stage1_steps (0: stage1_epochs epochs; > 0: stage 1's length in steps),
    kl_eps (1e-8), dsm_target_grad (True: paper B, the DSM term also trains the target encoder;
    False: it does not), kl_reduction ("mean" over latent entries | "sum": like the DSM term) — at
    the defaults the joint latents collapse (spread ≪ the sampler's σ), with "sum" they keep an O(1)
    spread (closurejax.diffusion.latent, issue 11).
  diffusion: sde ("ve" | "vp"), sigma (VE σ: 26 in paper A, 30 in paper B), beta_min/beta_max
    (VP), parameterization ("score_over_sigma": the papers' output/σ(t); "edm"), sigma_data
    (EDM), normalize_target (diffuse the standardised target; the papers use physical units,
    which their t_max assumes), t_sampling ("sampler_range": train on the sampler's
    [t_min, t_max] uniformly in t; "sampler_range_log_sigma": the same window, log σ(t) uniform;
    "paper": U[t_min_train, t_max_train] = U[2e-5, 2] as in paper A), noise_input (what the
    score network's Gaussian Fourier noise embedding receives: "t", the papers; "c_noise",
    EDM's ¼ ln σ(t), which spreads small noise levels apart), loss_weighting (of the denoising
    score-matching loss: "sigma2", the papers' λ(t) = σ(t)²; "edm", Karras et al.'s, which weighs
    a noise level σ by 1 + σ²/sigma_data² more and so trains the denoiser where it predicts the
    conditional mean; closurejax.diffusion.losses.named_weighting).
  sampler: `closurejax.diffusion.samplers.SamplerConfig` fields (the defaults are its defaults
    but t_min / t_max) — name ("euler_maruyama" | "predictor_corrector" | "heun_ode" |
    "dpm_solver"), num_steps (10), t_min (1e-3), t_max (0.1 paper A, 0.4 paper B), schedule of
    the time grid ("karras" | "uniform" | "log_sigma"), rho (Karras ρ = 7), final_zero (True: end
    with a noiseless step from t_min to 0), prior_data_std (0: the papers' prior N(0, σ(t_max)²);
    > 0: N(0, α(t_max)²·prior_data_std² + σ(t_max)²)), predictor ("reverse_diffusion" |
    "euler_maruyama"), corrector_steps (1), snr (0.16) and langevin_norm ("batch" | "sample") of
    the predictor–corrector sampler, time_variable ("noise_level" | "sde_time") of heun_ode.
  training: batch_size (200), learning_rate (1e-3), schedule ("step": ×decay_factor (0.5)
    every decay_every_epochs (200) | "cosine" | "constant"), num_epochs (1000), num_steps (0:
    num_epochs × steps per epoch; > 0: the run's length in steps), train_seconds (0: off; > 0:
    the run's length is planned on the machine that trains it, ⌊train_seconds ÷ measured seconds
    per step⌋ steps, overriding num_steps and num_epochs — closurejax.training.budget),
    warmup_steps,
    grad_clip_norm (0 = off), ema_decay (0.999; 0 = off), weight_decay, checkpoint_every (steps),
    keep (checkpoints kept), log_every (steps), seed.
  evaluation: ensemble_size (samples per test snapshot), max_snapshots (0 = all test snapshots),
    use_ema (evaluate the EMA parameters), zero_shot (also evaluate at the zero-shot sizes).
  simulation: the online (a-posteriori) test of experiments/simulate.py — trajectory (which
    test trajectory is the reference: an index into the test split), t_start / t_end (30 → 50 s
    in the papers), every (sample the closure every k steps, 5), reuse_noise (std of the noise
    added to a reused sample, 5e-5), sampler_noise ("fresh": the papers, a new draw of the
    diffusion sampler's noise at every sampling step | "member": one draw per member, reused at
    every sampling step, so a member's samples are correlated in time —
    closurejax.simulation.coupled; the fresh ensembles are under-dispersed online),
    ensemble_size (members, 100 in paper B), save_interval
    (seconds between saved snapshots), sources (closure sources to run: "none", "diffusion",
    "latent", "regression", "reference" (the DNS's exact closure: an upper bound),
    "smagorinsky" (Π only)), figure_times (field panels at these times, 35/40/45/50 s),
    animation (write a GIF of reference / closure / no closure).

A frontier config (closurejax.evaluation.frontier: several closure models trained for one
wall-clock budget and scored side by side) adds the section `frontier_section()`:
  frontier: models ({name: {section: {field: value}}}: each model's overrides of the config's
    other sections, e.g. {"model": {"kind": "latent"}, "latent": {"ae_stem": …}}), train_seconds
    (the training budget of every model on the machine that runs it, 1800), plan_steps (timed
    training steps per model when the budget is turned into steps, 5), samplers (((name, NFE),
    …): each model is scored with each; ("euler_maruyama", 10), ("dpm_solver", 2),
    ("dpm_solver", 4)), timing_batches (closure samples per timed call, (1, 100)),
    timing_repeats (timed calls per batch, median, 3), reference (the model the others are
    compared with, "pcdm"), tolerance (a model meets the accuracy bar with an ensemble-mean error
    ≤ (1 + tolerance) × the reference's at the same sampler and NFE, 0.1), online_members (the
    ensemble of the "online" stage, which runs the cheapest latent model meeting the bar beside
    the reference, 16).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from closurejax.diffusion.latent_model import AE_PRESETS


def base_config() -> ml_collections.ConfigDict:
    """Paper A, H target (journal version), full scale — unlocked, for study files to override."""
    config = ml_collections.ConfigDict()
    config.name = "base"
    config.seed = 0
    config.physics = ml_collections.ConfigDict(
        dict(
            viscosity=1e-3,
            dt=1e-3,
            length=1.0,
            drag=0.0,
            forcing="diagonal",
            forcing_amplitude=0.1,
            forcing_wavenumber=4,
            noise_sigma=5e-5,
            noise_alpha=0.005,
            noise_kappa=10,
            noise_modes=12,
            dealias="two_thirds",
            max_cfl=1.0,
        )
    )
    config.initial_condition = ml_collections.ConfigDict(dict(alpha=2.5, tau=7.0))
    config.data = ml_collections.ConfigDict(
        dict(
            fine_size=256,
            coarse_size=64,
            stepper="semi_implicit",
            closure="H",
            coarse_method="subsample",
            filter_name="box",
            filter_cutoff=16,
            filter_width=1.0 / 32,
            filter_width_points=16,
            smagorinsky_cs=0.16,
            num_trajectories=100,
            num_test=5,
            t_burn_in=20.0,
            t_end=40.0,
            snapshot_interval=0.1,
            sparse_stride=4,
            sparse_kernel=7,
            trajectories_per_chunk=4,
            zero_shot_sizes=(128, 256),
            dtype="float32",
        )
    )
    config.model = ml_collections.ConfigDict(
        dict(
            kind="score",
            width=20,
            modes=8,
            depth=4,
            embed_dim=256,
            embed_scale=30.0,
            conditions=("omega", "sparse_interpolated"),
            spectral_method="auto",
            batch_chunk=config_dict.FieldReference("auto", field_type=object),
        )
    )
    config.latent = ml_collections.ConfigDict(
        dict(
            training_mode="joint",
            **AE_PRESETS["paper_b"],  # the autoencoder pair of paper B (arXiv 2506.20771)
            latent_channels=1,
            width=20,
            modes=4,
            depth=4,
            embed_dim=256,
            embed_scale=30.0,
            loss_weights=(10.0, 0.1, 0.1, 0.01),
            stage1_weights=(10.0, 0.1, 0.0),
            stage1_epochs=500,
            stage1_steps=0,
            kl_eps=1e-8,
            dsm_target_grad=True,
            kl_reduction="mean",
        )
    )
    config.diffusion = ml_collections.ConfigDict(
        dict(
            sde="ve",
            sigma=26.0,
            beta_min=0.1,
            beta_max=20.0,
            parameterization="score_over_sigma",
            sigma_data=1.0,
            normalize_target=False,
            t_sampling="sampler_range",
            noise_input="t",
            loss_weighting="sigma2",
            t_min_train=2e-5,
            t_max_train=2.0,
        )
    )
    config.sampler = ml_collections.ConfigDict(
        dict(
            name="euler_maruyama",
            num_steps=10,
            t_min=1e-3,
            t_max=0.1,
            schedule="karras",
            rho=7.0,
            final_zero=True,
            prior_data_std=0.0,
            predictor="reverse_diffusion",
            corrector_steps=1,
            snr=0.16,
            langevin_norm="batch",
            time_variable="noise_level",
        )
    )
    config.training = ml_collections.ConfigDict(
        dict(
            batch_size=200,
            learning_rate=1e-3,
            schedule="step",
            decay_factor=0.5,
            decay_every_epochs=200,
            num_epochs=1000,
            num_steps=0,
            train_seconds=0.0,
            warmup_steps=0,
            grad_clip_norm=0.0,
            ema_decay=0.999,
            weight_decay=0.0,
            checkpoint_every=1000,
            keep=3,
            log_every=100,
            seed=0,
        )
    )
    config.evaluation = ml_collections.ConfigDict(
        dict(ensemble_size=10, max_snapshots=0, use_ema=True, zero_shot=True)
    )
    config.simulation = ml_collections.ConfigDict(
        dict(
            trajectory=0,
            t_start=30.0,
            t_end=50.0,
            every=5,
            reuse_noise=5e-5,
            sampler_noise="fresh",
            ensemble_size=100,
            save_interval=0.1,
            sources=("none", "diffusion"),
            figure_times=(35.0, 40.0, 45.0, 50.0),
            animation=True,
        )
    )
    return config


def frontier_section() -> ml_collections.ConfigDict:
    """Defaults of the `frontier` section (module docstring); `models` is empty."""
    return ml_collections.ConfigDict(
        dict(
            models=ml_collections.ConfigDict(),
            train_seconds=1800.0,
            plan_steps=5,
            samplers=(("euler_maruyama", 10), ("dpm_solver", 2), ("dpm_solver", 4)),
            timing_batches=(1, 100),
            timing_repeats=3,
            reference="pcdm",
            tolerance=0.1,
            online_members=16,
        )
    )
