"""Checking a run's outputs with nbval without executing the notebooks twice.

nbval always executes what it checks; :func:`nbval_replay` builds, from a notebook papermill already ran,
a notebook whose checked cells (``# NBVAL_CHECK_OUTPUT``) re-emit what they printed in that run
(:func:`helpers.tools.replay.replay_outputs`), so ``pytest --nbval-lax`` compares the run's outputs with the
stored ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import nbformat
import papermill

from helpers.tools.clean import KERNEL_NAME, is_checked


def nbval_replay(
    stored: str | os.PathLike,
    executed: str | os.PathLike,
    parameters: dict | None = None,
    edit: Callable[[nbformat.NotebookNode], None] | None = None,
) -> nbformat.NotebookNode:
    """A notebook on which ``pytest --nbval-lax`` compares an executed run's outputs with the stored ones.

    nbval always executes what it checks. To check a notebook papermill has already run
    (``executed``) without running it again, this builds the notebook nbval would check --
    ``stored`` with ``parameters`` injected as papermill does, its stored outputs as the
    reference, ``edit`` applied to it -- and replaces the code of every cell nbval compares
    (``# NBVAL_CHECK_OUTPUT``) by code that re-emits the outputs that cell produced in
    ``executed``; other cells become empty (lax mode does not compare them, and the run
    already reported their errors). nbval then compares, sanitizes and reports with all of
    its own machinery, in a kernel that runs in a second.
    """
    nb = papermill.execute_notebook(
        str(stored), None, parameters=parameters or {}, prepare_only=True, kernel_name=KERNEL_NAME, progress_bar=False
    )
    ran = [c for c in nbformat.read(str(executed), as_version=4).cells if c.cell_type == "code"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    if [c.source for c in ran] != [c.source for c in code]:
        raise ValueError(f"{executed} is not a run of {stored} with these parameters: the code cells differ")
    if edit is not None:
        edit(nb)
    for cell, run in zip(code, ran):
        markers = [line for line in cell.source.splitlines() if line.strip().startswith("# NBVAL_")]
        quoted = "\n".join("#   " + line for line in cell.source.splitlines())
        body = ""
        if is_checked(cell):
            errors = [o for o in run.outputs if o.output_type == "error"]
            if errors:
                raise ValueError(f"{executed}: a checked cell failed: {errors[0].ename}: {errors[0].evalue}")
            body = (
                f"# the outputs this cell printed in {Path(executed).name}:\n{quoted}\n"
                f"from helpers.tools.replay import replay_outputs\n"
                f"replay_outputs({json.dumps(run.outputs)!r})"
            )
        cell.source = "\n".join(markers + [body]).strip() or "pass"
    return nb
