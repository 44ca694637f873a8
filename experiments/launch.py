"""Shared launcher behaviour for the absl entry points in experiments/."""

from __future__ import annotations

import warnings

from absl import flags, logging


def quiet_library_logs() -> None:
    """Show warnings and errors only, unless the user asked for `--verbosity`/`-v`: orbax and
    jax log every checkpoint operation at INFO, which buries the progress bars and tables."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def one_line_warnings() -> None:
    """Print Python warnings (e.g. a corrupt checkpoint skipped on resume) as one line,
    ``warning: <message>``, without the file, line number and source line."""
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
