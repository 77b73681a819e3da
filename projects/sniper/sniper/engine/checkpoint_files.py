"""The checkpoint files of an output folder: which to resume from, stale temporaries, and
the refusal to train over a previous run.

Names are detectron2's: ``model_<iteration:07d>.pth`` every SOLVER.CHECKPOINT_PERIOD,
``model_final.pth`` at the end, ``last_checkpoint`` (a text file naming the latest one).
`sniper.engine.checkpoint.atomic_write` writes each through a hidden temporary
``.<name>.<random>.tmp`` in the same folder; a process killed mid-write leaves it behind.

Rules (docs/design.md section 8, "Checkpoints"):

- **Resume order** (`resume_order`): the file named by ``last_checkpoint``, then
  ``model_final.pth``, then ``model_<N>.pth`` by decreasing N. The first readable one is
  used; each unreadable one is a warning naming the file and the reason.
- **Stale temporaries** (`clean_stale_temporaries`): at the start of training the main
  process removes the ``.model_*.pth.*.tmp`` and ``.last_checkpoint.*.tmp`` files of the
  folder (only those names), with a log line.
- **Previous run** (`check_previous_run`): training without ``--resume`` into a folder that
  holds ``last_checkpoint`` or any ``model_*.pth`` is refused (`CheckpointError`) unless
  ``--overwrite``, which deletes them first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator

__all__ = [
    "LAST_CHECKPOINT",
    "CheckpointError",
    "checkpoint_errors_exit",
    "check_previous_run",
    "checkpoint_names",
    "clean_stale_temporaries",
    "previous_run_files",
    "read_last_checkpoint",
    "resume_order",
]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"
FINAL = "model_final.pth"
_NUMBERED = re.compile(r"model_(\d+)\.pth")
_TEMPORARY = re.compile(r"\.(model_[^/]*\.pth|last_checkpoint)\..+\.tmp")


class CheckpointError(ValueError):
    """A problem with the checkpoint files of a folder that the user must resolve (no
    readable checkpoint, a checkpoint that does not fit the model, a previous run in the
    way); the message is one line naming the file and the ways out."""


def _listing(folder: str) -> list[str]:
    """Names of the regular files of ``folder`` ([] when it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_file(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def checkpoint_names(folder: str) -> list[str]:
    """The checkpoint files of ``folder`` (base names), newest first: ``model_final.pth``,
    then ``model_<N>.pth`` by decreasing N. Other names are not checkpoints."""
    names = _listing(folder)
    numbered = sorted(
        (n for n in names if _NUMBERED.fullmatch(n)),
        key=lambda n: int(_NUMBERED.fullmatch(n).group(1)),  # type: ignore[union-attr]
        reverse=True,
    )
    return ([FINAL] if FINAL in names else []) + numbered


def read_last_checkpoint(folder: str) -> str | None:
    """The base name written in ``<folder>/last_checkpoint``, or None without that file.

    Raises:
        CheckpointError: the file exists but cannot be read or names a path outside
            ``folder`` (it holds a bare file name).
    """
    path = os.path.join(folder, LAST_CHECKPOINT)
    if not os.path.lexists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not readable ({err}): delete it to resume") from None
    if not name or os.path.basename(name) != name:
        raise CheckpointError(
            f"{path} holds {name!r}, not the name of a checkpoint file in {folder}: delete it "
            "to resume from the newest checkpoint there"
        )
    return name


def resume_order(folder: str) -> list[str]:
    """Paths to try, in order, to resume from ``folder`` (module doc); the file named by
    ``last_checkpoint`` comes first even when it does not exist (the caller warns)."""
    named = read_last_checkpoint(folder)
    names = checkpoint_names(folder)
    order = ([named] if named else []) + [n for n in names if n != named]
    return [os.path.join(folder, n) for n in order]


def clean_stale_temporaries(folder: str) -> list[str]:
    """Delete the temporaries of interrupted checkpoint saves in ``folder`` (module doc).

    Call it before this job saves anything (the main process, at the start of training).

    Returns:
        The base names removed, sorted.
    """
    removed = []
    for name in _listing(folder):
        if _TEMPORARY.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
                removed.append(name)
    if removed:
        logger.info(
            "removed %d temporary files of interrupted checkpoint saves in %s: %s",
            len(removed),
            folder,
            ", ".join(removed),
        )
    return removed


def previous_run_files(folder: str) -> list[str]:
    """Base names of ``folder`` that belong to a run's checkpoints (``last_checkpoint``,
    ``model_final.pth``, ``model_<N>.pth``), sorted."""
    names = checkpoint_names(folder)
    if os.path.lexists(os.path.join(folder, LAST_CHECKPOINT)):
        names.append(LAST_CHECKPOINT)
    return sorted(names)


def check_previous_run(
    folder: str, *, overwrite: bool, delete: bool = True, files: list[str] | None = None
) -> None:
    """Refuse to train from scratch over the checkpoints of a previous run in ``folder``.

    Args:
        folder: the run's OUTPUT_DIR ("" = nothing is saved: no check).
        overwrite: the user asked to replace the previous run (``--overwrite``).
        delete: with ``overwrite``, delete its checkpoint files (the main process; other
            ranks pass False).
        files: the run's files as the main process saw them (`previous_run_files`);
            default: list ``folder`` here.

    Raises:
        CheckpointError: ``folder`` holds checkpoints and not ``overwrite``; the message
            names the folder, the files and the ways out.
    """
    if not folder:
        return
    files = previous_run_files(folder) if files is None else files
    if not files:
        return
    if not overwrite:
        shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
        state = "a finished run" if FINAL in files else "an unfinished run"
        raise CheckpointError(
            f"output folder {folder} holds {state} ({shown}): add --resume to continue it, "
            "--overwrite to delete its checkpoints and train again, or set OUTPUT_DIR to a "
            "new folder"
        )
    if delete:
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
        logger.warning("--overwrite: deleted the previous run's %s in %s", ", ".join(files), folder)


@contextlib.contextmanager
def checkpoint_errors_exit() -> Iterator[None]:
    """Turn a `CheckpointError` raised inside into one ``error: ...`` line on stderr and
    exit status 2 (the rule of every entry point)."""
    try:
        yield
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
