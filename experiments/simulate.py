"""The papers' online (a-posteriori) test of trained closure models.

    python experiments/simulate.py --config=experiments/configs/cpu_small.py --workdir=W

Needs the study's dataset and trained runs in W (generate_data.py, train.py with the same
config). Regenerates the reference DNS of test trajectory `simulation.trajectory` (same seeds),
runs an ensemble of `simulation.ensemble_size` coupled coarse runs from t_start to t_end for every
closure source in `simulation.sources` (none, diffusion, latent, regression, reference,
smagorinsky), and writes W/simulation/results.json and figures (fields at figure_times, error,
enstrophy, spread–skill, spectra, rollout.gif). Re-running skips finished sources and resumes a
killed one from its last chunk, when made with the same model, diffusion and sampler sections and
the same weights (by content); a stale result is recomputed, with one line saying what changed.
`--sources=none,diffusion` overrides the config's list.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from closurejax.evaluation import online_study as study
from experiments import launch

_CONFIG = launch.define_config()
_WORKDIR = launch.define_workdir("Study folder (dataset, trained runs).")
_SOURCES = flags.DEFINE_list("sources", None, "Closure sources (default: the config's).")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bars.")


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    launch.one_line_warnings()
    results = study.run_online(
        _CONFIG.value, _WORKDIR.value, _SOURCES.value, show_progress=not _NO_PROGRESS.value
    )
    print(study.format_table(results))
    print(f"results and figures: {_WORKDIR.value}/simulation")


if __name__ == "__main__":
    launch.run(main)
