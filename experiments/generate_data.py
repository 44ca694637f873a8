"""Generate a closure dataset: batched DNS → snapshots → coarse fields, targets, sparse data.

    python experiments/generate_data.py --config=experiments/configs/paper_a_h.py --workdir=DIR

Override fields on the command line, e.g. `--config.data.num_trajectories=10`. Killing and
re-running the same command resumes from the last finished chunk.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from closurejax.data import generate
from experiments import launch

_CONFIG = launch.define_config()
_WORKDIR = launch.define_workdir("Folder for the dataset (created if absent).")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    generate.generate(_CONFIG.value, _WORKDIR.value, show_progress=not _NO_PROGRESS.value)


if __name__ == "__main__":
    launch.run(main)
