"""Shared launcher behaviour for the absl entry points in experiments/.

Every launcher ends with `run(main)` instead of ``app.run(main)``: whatever a user can get wrong
ends in one line ``<launcher>: <what is wrong>`` on stderr and exit status 1, never a traceback:

* flags: an unknown flag, a missing required one, a bad value (absl's own message, one line);
  ``--workdir`` (`define_workdir`) that is a file, lies under a file or is not writable;
* the config (`define_config`): an empty ``--config=``, a file that does not exist or is not a
  Python config file (e.g. YAML), an override of an unknown field (``--config.model.widht=3``:
  the section's fields are listed), a ``model.kind`` that is none of the model kinds;
* what the library refuses while running (ValueError, FloatingPointError, OSError: a bad
  config value, a mismatched or corrupt workdir, a missing prerequisite, a locked folder).

absl's config flags load the file and apply the overrides while the flags are parsed, before
`main`: `run` parses them itself (`parse_flags`, app.run's flags parser), so both kinds of error
take the same one path. Ctrl-C ends in one line too (where the work stopped, when the library
says, and that the same command resumes), with exit status 130.
"""

from __future__ import annotations

import difflib
import re
import runpy
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as _config_flags

from closurejax import interrupts

REFUSALS = (ValueError, FloatingPointError, OSError)
"""What the library raises for a refusal a user can act on (one-line messages)."""

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT), as a shell reports a process ended by it."""

EXAMPLE_CONFIG = "experiments/configs/demo.py"

_CONFIG_DEFAULTS: dict[str, str] = {}  # config flag name -> default path (`define_config`)


def quiet_library_logs() -> None:
    """Show warnings and errors only, unless the user asked for `--verbosity`/`-v`: orbax and
    jax log every checkpoint operation at INFO, which buries the progress bars and tables."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def one_line_warnings() -> None:
    """Print Python warnings (e.g. a corrupt checkpoint skipped on resume) as one line,
    ``warning: <message>``, without the file, line number and source line."""
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"


def define_config(
    default: str | None = None, help_string: str = "Study config file.", name: str = "config"
) -> flags.FlagHolder:
    """The launcher's ``--config`` (a Python file whose ``get_config()`` returns the study's
    ConfigDict; ``--config.<section>.<field>=value`` overrides a field), required unless it has
    a `default` path.

    The default is applied by `parse_flags` rather than by absl, which would load the file and
    apply the overrides when the flag is defined, at import, outside `run`'s error handling.
    """
    if default is not None:
        _CONFIG_DEFAULTS[name] = default
        help_string = f"{help_string} Default: {default}."
    holder = config_flags.DEFINE_config_file(name, None, help_string, lock_config=True)
    if default is None:
        flags.mark_flag_as_required(name)
    return holder


def define_workdir(
    help_string: str, default: str | None = None, name: str = "workdir"
) -> flags.FlagHolder:
    """The ``--workdir`` folder (required unless it has a `default`), refused while the flags are
    parsed when it is a file, lies under a file or is not writable (`check_writable_folder`)."""
    holder = flags.DEFINE_string(name, default, help_string)
    if default is None:
        flags.mark_flag_as_required(name)
    flags.register_validator(name, check_writable_folder)
    return holder


def check_writable_folder(path: str | None) -> bool:
    """True if `path` is a folder this process can write in, or can create (its nearest existing
    ancestor is a writable folder); raises `flags.ValidationError` saying why not. None passes
    (a required flag's own check reports it)."""
    if path is None:
        return True
    if not path:
        raise flags.ValidationError("is empty; allowed: a folder (created if absent)")
    folder = Path(path).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under the file {existing}"
        raise flags.ValidationError(f"{where}; allowed: a folder (created if absent)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise flags.ValidationError(
            f"{existing} is not writable (creating a file there: {error.strerror or error}); "
            "allowed: a folder this user can write in"
        ) from None
    return True


def run(main: Callable[[list[str]], Any]) -> None:
    """``app.run(main)`` with the one-line errors of the module docstring, named after the
    launcher's file (``train: …``)."""
    name = Path(sys.argv[0]).stem

    def guarded(argv: list[str]) -> Any:
        try:
            with interrupts.catching():  # a Ctrl-C Python swallowed still stops the launcher
                return main(argv)
        except KeyboardInterrupt as interrupt:
            where = str(interrupt) or "interrupted"
            print(f"{name}: {where}; run the same command to resume", file=sys.stderr)
            sys.exit(INTERRUPTED_EXIT)
        except REFUSALS as error:
            _refuse(name, error)

    app.run(guarded, flags_parser=lambda argv: parse_flags(argv, name))


def _refuse(name: str, error: BaseException | str) -> NoReturn:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    sys.exit(f"{name}: {' '.join(lines) or type(error).__name__}")


def parse_flags(argv: list[str], name: str) -> list[str]:
    """Parses `argv` into absl's FLAGS and checks every config flag's config (`define_config`):
    returns the arguments left for ``main``; any error exits with one line ``<name>: …``."""
    argv = list(argv)
    for flag_name, default in _CONFIG_DEFAULTS.items():
        if flag_name in flags.FLAGS and _config_argument(argv, flag_name) is None:
            argv.insert(1, f"--{flag_name}={default}")
    sys.argv[:] = argv  # config flags read their overrides from sys.argv
    try:
        rest = flags.FLAGS(argv)
        configs = {n: flags.FLAGS[n].value for n in _config_flag_names()}
        for flag_name, config in configs.items():
            _check_loaded(flag_name, config)
    except flags.Error as error:
        _refuse(name, error)
    except Exception as error:  # raised by loading a config file or applying an override
        _refuse(name, _config_error(argv, error))
    for config in configs.values():
        model = config.get("model") if hasattr(config, "get") else None
        if model is not None and "kind" in model:
            from closurejax.training import run as training  # noqa: PLC0415 (configs only)

            try:
                training.check_model_kind(model["kind"])
            except ValueError as error:
                _refuse(name, error)
    return rest


def _config_flag_names() -> list[str]:
    return [n for n in flags.FLAGS if _config_flags.is_config_flag(flags.FLAGS[n])]


def _config_argument(argv: Sequence[str], flag_name: str) -> str | None:
    """The last value given to ``--<flag_name>`` in `argv` (``=value`` or the next argument),
    or None if it is not given."""
    value = None
    for i, arg in enumerate(argv[1:], start=1):
        match = re.fullmatch(rf"--?{re.escape(flag_name)}(=(.*))?", arg, re.DOTALL)
        if match:
            value = match.group(2) if match.group(1) else (argv[i + 1] if i + 1 < len(argv) else "")
    return value


def _check_loaded(flag_name: str, config: Any) -> None:
    """Raises the error of a config file that failed to load (absl keeps it until the value is
    used) or whose ``get_config()`` returned None."""
    if config is None:
        raise ValueError(f"--{flag_name}: get_config() returned None; allowed: a ConfigDict")
    config.keys()


def _config_error(argv: Sequence[str], error: Exception) -> str:
    """One line on what is wrong with a config flag, when loading it or applying an override
    raised `error`: the file (empty, missing, not a Python config), an unknown field (with the
    fields its section has), or else the error itself."""
    for flag_name in _config_flag_names():
        path = _config_argument(argv, flag_name)
        if path is None:
            continue
        config = _load_config(flag_name, path)
        if isinstance(config, str):
            return config
        for arg in argv[1:]:
            if arg.startswith(f"--{flag_name}."):
                problem = _unknown_field(flag_name, arg, config)
                if problem:
                    return problem
    return str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"


def _load_config(flag_name: str, path: str) -> Any:
    """The config of file `path` (``file[:argument]``, as config flags take it), or one line on
    why it cannot be one."""
    allowed = f"allowed: a Python config file defining get_config(), e.g. {EXAMPLE_CONFIG}"
    file, *argument = path.split(":", 1)
    if not file:
        return f"--{flag_name} is empty; {allowed}"
    if not Path(file).exists():
        return f"--{flag_name}={path}: no such file; {allowed}"
    if not Path(file).is_file():
        return f"--{flag_name}={path} is not a file; {allowed}"
    try:
        return runpy.run_path(file)["get_config"](*argument)
    except Exception as error:  # anything the file does: it is not a loadable config
        detail = f"{type(error).__name__}: {error}".splitlines()[0]
        return f"--{flag_name}={path} is not a Python config file ({detail}); {allowed}"


def _unknown_field(flag_name: str, arg: str, config: Any) -> str | None:
    """One line if override `arg` (``--config.a.b=value``) names a field `config` lacks."""
    field_path = arg[len(flag_name) + 3 :].split("=", 1)[0]
    node, parts = config, field_path.split(".")
    for depth, part in enumerate(parts):
        keys = list(node.keys()) if hasattr(node, "keys") else []
        if part not in keys:
            section = ".".join([flag_name, *parts[:depth]])
            close = difflib.get_close_matches(part, keys, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fields = ", ".join(sorted(keys)) if keys else "none: it is not a section"
            return f"{arg}: {section} has no field {part!r}{hint}; its fields: {fields}"
        node = node[part]
    return None
