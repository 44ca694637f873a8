"""A whole study in one command: data, diffusion model, regression baseline, offline table,
online test with the papers' sampler and a fast one, summary (`closurejax.evaluation.study`);
for a config with a `frontier` section, the cost–accuracy frontier of its models instead
(data, plan, train, evaluate: `closurejax.evaluation.frontier`).

    make reproduce STUDY=paper_a_h_cpu WORKDIR=workdirs/paper_a_h_cpu
    python experiments/reproduce.py --config=experiments/configs/paper_a_h_cpu.py \\
        --workdir=workdirs/paper_a_h_cpu [--results=experiments/results/paper_a_h_cpu]
    make reproduce STUDY=frontier_h_cpu WORKDIR=workdirs/paper_a_h_cpu

Every stage resumes: re-run the same command after an interruption. With --results, the summary,
three figures and the trained EMA weights are copied there (what the repository keeps of a study;
of a frontier: frontier.json and frontier.png).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from closurejax.evaluation import frontier, study
from experiments import launch

_CONFIG = launch.define_config()
_WORKDIR = launch.define_workdir("Folder for everything the study makes.")
_RESULTS = flags.DEFINE_string("results", None, "Copy summary, figures and weights here.")
_STAGES = flags.DEFINE_list(
    "stages",
    None,
    f"Stages to run, in study order (default: all; a study's: {','.join(study.STAGES)}; a "
    f"frontier's: {','.join(frontier.STAGES)}).",
)
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bars.")


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    config = _CONFIG.value
    workdir = Path(_WORKDIR.value).resolve()
    progress = not _NO_PROGRESS.value
    if "frontier" in config:
        stages = frontier.STAGES if _STAGES.value is None else _STAGES.value
        results = frontier.run_frontier(config, workdir, stages=stages, show_progress=progress)
        if _RESULTS.value and results is not None:
            for path in frontier.export_frontier(workdir, _RESULTS.value):
                print(f"written: {path}")
        if results is not None:
            print(frontier.format_results(results))
        return
    stages = study.STAGES if _STAGES.value is None else _STAGES.value
    summary = study.run_study(config, workdir, stages=stages, show_progress=progress)
    if _RESULTS.value:
        for path in study.export_results(config, workdir, _RESULTS.value):
            print(f"written: {path}")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    launch.run(main)
