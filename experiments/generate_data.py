"""Generate a closure dataset: batched DNS → snapshots → coarse fields, targets, sparse data.

    python experiments/generate_data.py --config=experiments/configs/paper_a_h.py --workdir=DIR

Override fields on the command line, e.g. `--config.data.num_trajectories=10`. Killing and
re-running the same command resumes from the last finished chunk.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from closurejax.data import generate
from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the dataset (created if absent).")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    try:
        generate.generate(_CONFIG.value, _WORKDIR.value, show_progress=not _NO_PROGRESS.value)
    except (ValueError, FloatingPointError) as error:  # bad config, mismatched or corrupt workdir
        sys.exit(f"generate_data: {error}")


if __name__ == "__main__":
    app.run(main)
