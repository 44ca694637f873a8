"""Train a closure model (diffusion score model, the regression baseline, or paper B's latent
model) on a study dataset.

    python experiments/train.py --config=experiments/configs/paper_a_h.py --workdir=DIR

The dataset is read from DIR/dataset (made by generate_data.py with the same config, or
--data_dir); checkpoints and metrics go to DIR/<model.kind>. Re-running resumes exactly.
`--config.model.kind=regression` trains the deterministic FNO baseline.

Latent configs (`model.kind=latent`, e.g. experiments/configs/paper_b_lcdm_joint.py): joint
training goes to DIR/latent; with `latent.training_mode=two_stage` the two stages run in order,
DIR/latent_two_stage/autoencoders then DIR/latent_two_stage/score (stage 2 encodes the training
set with the frozen stage-1 EMA autoencoders), each resuming exactly; --num_steps then counts the
steps of both stages. `--config.model.kind=score` trains the P-CDM of the config's model section.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from closurejax.training import run
from experiments import launch

_CONFIG = config_flags.DEFINE_config_file("config", None, "Study config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Study folder (dataset, runs).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset folder (default: WORKDIR/dataset).")
_STEPS = flags.DEFINE_integer("num_steps", None, "Stop at this global step (default: the config).")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    launch.one_line_warnings()
    try:
        run.train(
            _CONFIG.value,
            _WORKDIR.value,
            _DATA_DIR.value,
            num_steps=_STEPS.value,
            show_progress=not _NO_PROGRESS.value,
            log=print,
        )
    except (ValueError, FloatingPointError, FileNotFoundError) as error:
        sys.exit(f"train: {error}")


if __name__ == "__main__":
    app.run(main)
