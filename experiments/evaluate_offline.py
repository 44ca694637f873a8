"""Offline evaluation of trained closure models on the test split, at the training resolution
and zero-shot at the higher resolutions of DIR/zero_shot (the papers' offline table).

    python experiments/evaluate_offline.py --config=experiments/configs/paper_a_h.py --workdir=DIR

Physical-space studies (`model.kind` "score"): evaluates DIR/score (the diffusion model) and, if
trained, DIR/regression (the deterministic baseline); writes DIR/offline/metrics.json and figures
(truth, samples, ensemble mean, spread, error) and prints a table. Latent studies (`model.kind`
"latent"): the latent run beside the P-CDM of DIR/score, in DIR/offline_<run>. A progress bar
counts the evaluations (model × resolution; `--no_progress` hides it). The logic is
`closurejax.evaluation.offline_study.run_offline`.

With `--denoiser_times=1e-3,1e-2,0.1` it measures instead the diffusion model's denoiser error at
those times (`closurejax.evaluation.offline.evaluate_denoiser`: where the sampler's error comes
from) and writes DIR/offline/denoiser.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from closurejax.diffusion import latent_model
from closurejax.evaluation import offline_study
from experiments import launch

_CONFIG = launch.define_config()
_WORKDIR = launch.define_workdir("Study folder (dataset, runs).")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")
_DENOISER_TIMES = flags.DEFINE_list(
    "denoiser_times", None, "Only the denoiser error of DIR/score at these diffusion times."
)


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    launch.one_line_warnings()
    workdir = Path(_WORKDIR.value).resolve()
    if _DENOISER_TIMES.value:
        try:
            times = [float(t) for t in _DENOISER_TIMES.value]
        except ValueError:
            raise ValueError(
                f"--denoiser_times={','.join(_DENOISER_TIMES.value)}: expected numbers"
            ) from None
        out = offline_study.run_denoiser(_CONFIG.value, workdir, times)
        print("t        sigma    denoiser rel. error")
        for t, sigma, err in zip(out["t"], out["sigma"], out["rel_error"], strict=True):
            print(f"{t:<8.3g} {sigma:<8.3g} {err:.4f}")
        print(f"written: {workdir / 'offline' / 'denoiser.json'}")
        return
    results = offline_study.run_offline(
        _CONFIG.value, workdir, show_progress=not _NO_PROGRESS.value
    )
    print(offline_study.format_results(results))
    kind = _CONFIG.value.model.kind
    out = "offline" if kind != latent_model.KIND else f"offline_{results['latent_run']}"
    print(f"written: {workdir / out}")


if __name__ == "__main__":
    launch.run(main)
