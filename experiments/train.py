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
from pathlib import Path

if __name__ == "__main__":  # run as `python experiments/<launcher>.py`: see experiments/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import flags

from closurejax.training import run
from experiments import launch

_CONFIG = launch.define_config()
_WORKDIR = launch.define_workdir("Study folder (dataset, runs).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset folder (default: WORKDIR/dataset).")
_STEPS = flags.DEFINE_integer("num_steps", None, "Stop at this global step (default: the config).")
_NO_PROGRESS = flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")


def main(argv: list[str]) -> None:
    del argv
    launch.quiet_library_logs()
    launch.one_line_warnings()
    run.train(
        _CONFIG.value,
        _WORKDIR.value,
        _DATA_DIR.value,
        num_steps=_STEPS.value,
        show_progress=not _NO_PROGRESS.value,
        log=print,
    )


if __name__ == "__main__":
    launch.run(main)
