"""Key numbers for the book: what a notebook run by the runner notes for the book's index.

:func:`record` appends ``{"notebook": ..., "numbers": {...}}`` to ``$WORKBOOK_NUMBERS``
(``DIR/numbers.jsonl``, set by the notebook runner for its kernels, beside the forward-pass log of
:mod:`helpers.store.passes`) and does nothing anywhere else (JupyterLab, a script, a test).
:mod:`helpers.tools.book` reads the file back into the book; it sits low (beside the pass log) so
that the helpers a notebook already calls for its result can note their numbers.
"""

from __future__ import annotations

import json
import os

from helpers.store.passes import SOURCE_ENV

NUMBERS_ENV = "WORKBOOK_NUMBERS"
NUMBERS = "numbers.jsonl"


def record(**numbers: object) -> None:
    """Note key numbers of the running notebook for the book's index (``accuracy=0.93, photos=60``).

    Appends one JSON line ``{"notebook": ..., "numbers": {...}}`` to the file named by
    ``$WORKBOOK_NUMBERS``; without that variable (JupyterLab, scripts, tests) it does nothing.
    Names read as words with ``_`` as spaces (a name with spaces in it is shown as it is); a
    name with ``accuracy`` in it is shown as a percentage, one ending in ``seconds`` in
    seconds. Never raises: the book must not cost a lesson.
    """
    target = os.environ.get(NUMBERS_ENV)
    if not target:
        return
    try:
        entry = {"notebook": os.environ.get(SOURCE_ENV, ""), "numbers": {k: _plain(v) for k, v in numbers.items()}}
        line = (json.dumps(entry) + "\n").encode()  # in the order given: the index shows them so
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one line: several kernels may append at once
        finally:
            os.close(fd)
    except (OSError, TypeError, ValueError):
        pass


def _plain(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return str(value)
