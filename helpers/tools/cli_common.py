"""What the command line's commands share: the usage error, the photo folder, warnings, the options given.

Light on purpose (no Keras): :mod:`helpers.tools.cli` imports it for every command.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from helpers.data.datasets import get_photos

HELD = contextlib.ExitStack()
"""What a command holds until :func:`helpers.tools.cli.main` returns, however it returns
(``train``: the run lock of ``--out``)."""
UNSET = object()
"""``--weights`` not given: the helper function's own default applies."""


class UsageError(Exception):
    """A command-line mistake: the message says what to pass instead (exit code 2)."""


def photo_folder(given: Path | None) -> Path:
    """Photos the way the notebooks find them: ``given``, ``$WORKBOOK_DATA``, Open Images (fetched once), CIFAR-100."""
    check_photo_folder(given)
    return get_photos(given)


def check_photo_folder(given: Path | None) -> None:
    """Refuse a ``--data`` that is not a folder (None: not given, the default photos apply)."""
    if given is not None and not given.is_dir():
        what = "is a file, not a folder" if given.exists() else "does not exist"
        raise FileNotFoundError(
            f"photo folder {given} {what}: pass the folder that holds one sub-folder per "
            "class (DIR/<class>/*.jpg or DIR/{train,val}/<class>/*.jpg)"
        )


def given(args: argparse.Namespace, *names: str) -> dict:
    """The options the user gave (not None); the rest keep the helper function's own defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def warn(line: str) -> None:
    """One warning line on stderr (prefixed ``warning:`` unless it says what it is)."""
    print(
        line if line.startswith(("WARNING", "warning", "skipped")) else f"warning: {line}", file=sys.stderr, flush=True
    )


def at_least(name: str, value: int | None, least: int) -> None:
    """Refuse ``value`` below ``least`` (None: not given, fine)."""
    if value is not None and value < least:
        raise UsageError(f"{name} must be at least {least}, got {value}")
