"""Shared launcher behaviour for the absl entry points in experiments/."""

from __future__ import annotations

from absl import flags, logging


def quiet_library_logs() -> None:
    """Show warnings and errors only, unless the user asked for `--verbosity`/`-v`: orbax and
    jax log every checkpoint operation at INFO, which buries the progress bars and tables."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
