"""Keeping the stored notebooks clean: no outputs except the cells nbval checks (``python -m helpers clean-notebooks``).

A checked cell carries ``# NBVAL_CHECK_OUTPUT``; it keeps its outputs (copied from a quick run by
:func:`store_checked_outputs`), every other cell is stored without them, and run metadata goes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import nbformat

from helpers.files import atomic_path

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
KERNEL_NAME = "python3"


def is_checked(cell) -> bool:
    """Does nbval compare this cell's output (``# NBVAL_CHECK_OUTPUT`` in its source)?"""
    return cell.cell_type == "code" and CHECK_MARK in cell.source


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs (except checked cells'), execution counts and run metadata, in place.

    Cell metadata keeps only ``tags``; notebook metadata keeps the kernel spec and the
    language. Checked cells keep their outputs, and an execution count equal to their
    position among the code cells (nbval only compares cells that were run).
    """
    code_number = 0
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.NotebookNode({"tags": list(tags)} if tags else {})
        if "id" not in cell or not cell.id:
            cell.id = hashlib.sha1(f"{index}:{cell.source}".encode()).hexdigest()[:8]
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            continue
        code_number += 1
        cell.execution_count = None
        if not is_checked(cell):
            cell.outputs = []
            continue
        cell.execution_count = code_number
        for output in cell.outputs:
            if "execution_count" in output:
                output.execution_count = code_number
            if "metadata" in output:
                output.metadata = nbformat.NotebookNode({})
    nb.metadata = nbformat.NotebookNode(
        {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": KERNEL_NAME},
            "language_info": {"name": "python"},
        }
    )
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nb


def clean_text(nb: nbformat.NotebookNode) -> str:
    """The stored form of a notebook: cleaned, validated, one-space indented JSON."""
    nb = clean(nb)
    nbformat.validate(nb)
    return nbformat.writes(nb, version=4) + "\n"


def dirty_notebooks(paths: Iterable[str | os.PathLike], fix: bool = False) -> list[Path]:
    """Notebooks whose stored form is not clean; with ``fix=True`` rewrite them clean."""
    dirty = []
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        wanted = clean_text(nbformat.reads(text, as_version=4))
        if text != wanted:
            dirty.append(path)
            if fix:
                with atomic_path(path) as tmp:
                    tmp.write_text(wanted, encoding="utf-8")
    return dirty


def store_checked_outputs(executed: str | os.PathLike, stored: str | os.PathLike) -> int:
    """Copy the outputs of checked cells from an executed (quick-mode) copy into the stored notebook.

    Cells are matched by their source text. Returns how many cells were updated.
    """
    ran = nbformat.read(str(executed), as_version=4)
    outputs = {cell.source: cell.outputs for cell in ran.cells if is_checked(cell)}
    nb = nbformat.read(str(stored), as_version=4)
    updated = 0
    for cell in nb.cells:
        if is_checked(cell) and cell.source in outputs:
            cell.outputs = outputs[cell.source]
            updated += 1
    text = clean_text(nb)
    tmp = Path(stored).with_name(f".{Path(stored).name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(stored)
    return updated
