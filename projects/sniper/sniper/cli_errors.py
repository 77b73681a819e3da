"""The one error rule of every command line: a user's mistake is one line, exit status 2.

``error: <file>: <key>: <value>: <what is wrong>`` (whatever of these applies) on stderr, no
traceback, as argparse does for a bad flag. Only the project's user-error class
(`ConfigError`, raised for bad configs, flags and launch arguments) and `OSError` (a path the
user gave: missing, unreadable, a folder, read-only) become that line; anything else is a
bug and keeps its traceback. Imports no torch.

Typical use::

    def main(argv=None) -> int:
        with cli_errors():
            ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

__all__ = [
    "INTERRUPTED",
    "ConfigError",
    "ConfigKeyError",
    "cli_errors",
    "exit_with_error",
    "one_line",
]

#: exit status of a tool stopped by Ctrl-C once its partial results are saved (128 + SIGINT)
INTERRUPTED = 130


class ConfigError(ValueError):
    """A user's mistake in a config file, a config key, a command-line flag or the launch.

    ``str(err)`` is the whole message (no quotes added, unlike KeyError); ``key`` names the
    config key when one is at fault (None otherwise), so that callers can add the file or
    the command line that set it.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigKeyError(ConfigError, KeyError):
    """An unknown config key (also a KeyError, as fvcore's own error for unknown keys)."""

    __str__ = ConfigError.__str__


def one_line(message: str) -> str:
    """``message`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(message).split())


def exit_with_error(message: str, status: int = 2) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with ``status``."""
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def _os_error_message(err: OSError) -> str:
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror.lower()}"
    return str(err.args[0]) if len(err.args) == 1 else str(err)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn a `ConfigError` or an `OSError` raised inside the block into `exit_with_error`.

    Raises:
        SystemExit: status 2 after printing the one line.
    """
    try:
        yield
    except ConfigError as err:
        exit_with_error(str(err))
    except OSError as err:
        exit_with_error(_os_error_message(err))
