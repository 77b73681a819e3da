"""How a command-line tool stops on a user's mistake or a Ctrl-C (no traceback).

- `exit_with_error`: print one ``error: ...`` line to stderr and exit with status 2, the rule
  of every entry point (as argparse and `sniper.config.load_config_or_exit` do);
- `INTERRUPTED`: the exit status after a Ctrl-C (128 + SIGINT), once the partial results are
  saved.
"""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["INTERRUPTED", "exit_with_error"]

INTERRUPTED = 130


def exit_with_error(message: str, status: int = 2) -> NoReturn:
    """Print ``error: <message>`` (one line) to stderr and exit with ``status``."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(status)
