"""Run the workbook's notebooks headless, and keep the stored notebooks clean.

``python -m helpers notebooks [--quick] --out DIR`` executes every ``notebooks/*.ipynb``
in order with papermill; ``--quick`` injects :data:`QUICK_PARAMETERS` (small images, few
photos and epochs, MobileNetV2) so that each notebook runs in well under a minute on two
CPU cores. Photos and weights still come from ``$WORKBOOK_DATA`` and
``$WORKBOOK_WEIGHTS_DIR``, as in notebook 00.

A failing cell, a cell running past ``--timeout`` seconds or a dead kernel fails that
notebook only: the next one still runs, ``DIR/notebooks.json`` (rewritten after every
notebook) says what failed and in which cell, and the command exits 1 at the end. Parameters
(``-p NAME VALUE``) are checked against the notebooks' ``parameters`` cells before any notebook
runs (:func:`check_parameters`); Ctrl-C stops the running notebook's kernel at once and records
that notebook as ``interrupted``. The
kernels count their forward passes into ``DIR/passes.jsonl`` (:mod:`helpers.store.passes`),
summarised in ``notebooks.json`` under ``forward_passes``.

Beside it: :mod:`helpers.tools.parameters` (what each notebook is given: quick mode, ``-p`` checked),
:mod:`helpers.tools.clean` (stored notebooks without outputs, except the cells nbval checks) and
:mod:`helpers.tools.nbval` (nbval on an existing run, without executing it again); their names are
re-exported here, where the runner began.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError

from helpers.files import write_json
from helpers.settings import PROJECT_ROOT
from helpers.store import numbers, passes
from helpers.tools import kernel
from helpers.tools.clean import (
    CHECK_MARK,
    KERNEL_NAME,
    clean,
    clean_text,
    dirty_notebooks,
    is_checked,
    store_checked_outputs,
)
from helpers.tools.nbval import nbval_replay
from helpers.tools.parameters import (
    PARAMETER_TYPES,
    QUICK_PARAMETERS,
    check_parameters,
    declared_parameters,
    parameters_for,
    parse_value,
)
from helpers.tools.replay import replay_outputs

__all__ = [  # the runner's own names, and those of its neighbours it re-exports
    "CHECK_MARK", "KERNEL_NAME", "clean", "clean_text", "dirty_notebooks", "is_checked", "store_checked_outputs",
    "nbval_replay", "replay_outputs", "PARAMETER_TYPES", "QUICK_PARAMETERS", "check_parameters",
    "declared_parameters", "parameters_for", "parse_value", "NOTEBOOKS_DIR", "KERNEL_ARGUMENTS", "NotebookRun",
    "notebook_paths", "kernel_environment", "run_notebook", "write_summary", "run_notebooks", "DEFAULT_TIMEOUT",
    "PASS_LOG", "SUMMARY",
]  # fmt: skip

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
#: The kernel's own log: critical lines only. Otherwise every kernel prints ipykernel's warning that it
#: "is running over TCP without encryption" (true of every local kernel on 127.0.0.1, so it says nothing),
#: and a kernel stopped by Ctrl-C can log "KeyboardInterrupt caught in kernel" (an ERROR line) before the
#: runner's own one-line summary. A cell's errors still reach the notebook and the runner's summary.
#: Before the notebook's first cell, each kernel runs :data:`helpers.tools.kernel.EXEC_LINE`: Keras started
#: quietly, its forward passes counted, backend and device noted for the book (``import helpers`` does none of it).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL", f"--IPKernelApp.exec_lines={kernel.EXEC_LINE}"]


@dataclass
class NotebookRun:
    """The outcome of executing one notebook.

    ``error`` says what went wrong and in which cell (None when all ran); ``timed_out`` is
    True when a cell ran past the per-cell timeout; ``cell`` is the failing cell's execution
    count (or, for a cell that never got one, its position among the code cells).
    """

    name: str
    output: Path
    seconds: float
    parameters: dict
    error: str | None = None
    timed_out: bool = False
    cell: int | None = None
    interrupted: bool = False  # stopped by Ctrl-C

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "ok": self.ok,
            "error": self.error,
            "timed_out": self.timed_out,
            "interrupted": self.interrupted,
            "cell": self.cell,
            "parameters": self.parameters,
        }


def notebook_paths(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """The notebooks, in order (``NN_name.ipynb``); ``only`` keeps those whose name starts with one of them."""
    paths = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if not p.name.startswith("."))
    if only:
        wanted = [str(w).removesuffix(".ipynb") for w in only]
        paths = [p for p in paths if any(_matches(p.stem, w) for w in wanted)]
        if not paths:
            raise ValueError(f"no notebook in {notebooks_dir} matches {list(only)}")
    return paths


def _matches(stem: str, wanted: str) -> bool:
    """``--only 05`` is notebook ``05_…`` (not ``05a_…``); ``05a`` or a longer prefix picks by name."""
    if wanted.isdigit():
        return stem == wanted or stem.startswith(wanted + "_")
    return stem.startswith(wanted)


@contextlib.contextmanager
def kernel_environment(pass_log: str | os.PathLike | None = None, source: str | None = None):
    """Let the notebook kernels import ``helpers`` and keep TensorFlow's C++ logging quiet.

    With ``pass_log``, kernels started inside append their forward-pass records there
    (``$WORKBOOK_PASS_LOG``, :mod:`helpers.store.passes`), tagged with ``source``, and their key
    numbers for the book to ``numbers.jsonl`` beside it (``$WORKBOOK_NUMBERS``, :mod:`helpers.store.numbers`).
    """
    names = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", passes.LOG_ENV, passes.SOURCE_ENV, numbers.NUMBERS_ENV)
    saved = {k: os.environ.get(k) for k in names}
    paths = [str(PROJECT_ROOT)] + [p for p in (saved["PYTHONPATH"] or "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if pass_log is not None:
        os.environ[passes.LOG_ENV] = str(Path(pass_log).resolve())
        os.environ[numbers.NUMBERS_ENV] = str(Path(pass_log).resolve().with_name(numbers.NUMBERS))
    if source is not None:
        os.environ[passes.SOURCE_ENV] = source
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


DEFAULT_TIMEOUT = 1800  # seconds per cell
PASS_LOG = "passes.jsonl"
SUMMARY = "notebooks.json"


def run_notebook(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    parameters: dict | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    pass_log: str | os.PathLike | None = None,
) -> NotebookRun:
    """Execute one notebook with papermill into ``out_dir`` (also its working directory).

    Never raises for what happens in the notebook: a failing cell, a cell running past
    ``timeout`` seconds, a kernel that dies or never starts are all returned as the run's
    ``error`` (with the cell), and whatever ran is saved in the output notebook.
    """
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    start = time.perf_counter()
    error, timed_out, cell = None, False, None
    with kernel_environment(pass_log, source=path.stem), _ctrl_c_kills_kernels():
        try:
            papermill.execute_notebook(
                str(path),
                str(output),
                parameters=parameters or {},
                kernel_name=KERNEL_NAME,
                cwd=str(out_dir),
                progress_bar=False,
                execution_timeout=timeout,
                kernel_manager_class=TrackedKernelManager,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        except papermill.PapermillExecutionError as exc:
            cell = exc.exec_count
            error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # a cell timeout, a dead kernel, a kernel that never started
            timed_out = isinstance(exc, CellTimeoutError)
            message = (str(exc).strip().splitlines() or [""])[0]
            if timed_out:
                message = f"ran past the {timeout:g} s cell timeout ({message})"
            cell, where = _last_started_cell(output)
            error = f"{where}: {type(exc).__name__}: {message}"
    return NotebookRun(path.stem, output, time.perf_counter() - start, dict(parameters or {}), error, timed_out, cell)


_LIVE_KERNELS: set = set()  # kernel managers of the notebook running now (Ctrl-C kills their kernels)


class TrackedKernelManager(AsyncKernelManager):
    """jupyter_client's kernel manager, noting each kernel it starts in :data:`_LIVE_KERNELS`."""

    async def start_kernel(self, **kw):
        await super().start_kernel(**kw)
        _LIVE_KERNELS.add(self)


def _kill_live_kernels() -> None:
    for manager in list(_LIVE_KERNELS):
        pid = getattr(getattr(manager, "provisioner", None), "pid", None)
        if pid:
            with contextlib.suppress(OSError):  # a kernel leads its own process group: its children go too
                os.killpg(pid, signal.SIGKILL) if hasattr(os, "killpg") else os.kill(pid, signal.SIGTERM)
    _LIVE_KERNELS.clear()


@contextlib.contextmanager
def _ctrl_c_kills_kernels():
    """Meanwhile, Ctrl-C kills the running notebook's kernel first, then interrupts the runner.

    Left to itself, the kernel is asked to shut down while it still runs a cell, and prints a
    ZMQError traceback on the terminal as its sockets close under it; a killed kernel says nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(signum, frame):
        _kill_live_kernels()
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _LIVE_KERNELS.clear()


def _last_started_cell(executed: Path) -> tuple[int | None, str]:
    """The cell papermill started last in a partly executed notebook, and a phrase naming it."""
    try:
        nb = nbformat.read(str(executed), as_version=4)
    except Exception:  # not written at all: the kernel never ran a cell
        return None, "before any cell ran"
    started = None
    for position, c in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        if c.get("metadata", {}).get("papermill", {}).get("start_time"):
            started = position, c
    if started is None:
        return None, "before any cell ran"
    position, c = started
    first_line = next((line.strip() for line in c.source.splitlines() if line.strip()), "")
    shown = f" `{first_line[:60]}`" if first_line else ""
    if c.get("execution_count"):
        return c.execution_count, f"cell {c.execution_count}{shown}"
    return position, f"code cell {position}{shown}"


def write_summary(
    out_dir: str | os.PathLike,
    runs: list[NotebookRun],
    pending: Iterable[str] = (),
    pass_log: str | os.PathLike | None = None,
) -> Path:
    """Write ``out_dir/notebooks.json`` (atomically): the runs so far, the forward-pass counts.

    ``{"notebooks": [one NotebookRun.to_dict() each], "pending": [names still to run],
    "complete": bool, "interrupted": the notebook Ctrl-C stopped (or None),
    "forward_passes": helpers.store.passes.summarise(pass_log),
    "forward_passes_per_network": helpers.store.passes.totals(pass_log)}``: the first per cut and
    kind, the second per network over all of them (what "one pass per photo" is judged on).
    """
    pending = list(pending)
    interrupted = [r.name for r in runs if r.interrupted]
    summary = {
        "notebooks": [r.to_dict() for r in runs],
        "pending": pending,
        "complete": not pending and not interrupted,
        "interrupted": interrupted[0] if interrupted else None,
        "forward_passes": [],
        "forward_passes_per_network": [],
    }
    if pass_log is not None:
        try:
            summary["forward_passes"] = passes.summarise(pass_log)
            summary["forward_passes_per_network"] = passes.totals(pass_log)
        except ValueError as exc:  # a torn log must not cost the summary of the notebooks
            summary["forward_passes_error"] = str(exc)
    return write_json(Path(out_dir) / SUMMARY, summary)


def run_notebooks(  # noqa: PLR0913 - the notebooks command's options, one each (cli, tests name them)
    out_dir: str | os.PathLike,
    quick: bool = False,
    backbone: str | None = None,
    parameters: dict | None = None,
    only: Iterable[str] | None = None,
    notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR,
    log: Callable[[str], None] | None = print,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[NotebookRun]:
    """Execute every notebook in order into ``out_dir``; report each one's wall time.

    ``parameters`` are checked first (:func:`check_parameters`: unknown names and values of the
    wrong type raise ValueError before any notebook runs). A failing notebook -- an error, a
    cell past ``timeout`` seconds, a dead kernel -- does not stop the others; check
    ``all(run.ok for run in runs)``. Ctrl-C (KeyboardInterrupt) kills the running kernel,
    records that notebook as ``interrupted`` in ``notebooks.json`` and is raised again. ``out_dir/notebooks.json``
    (:func:`write_summary`) is rewritten after every notebook, so it is there even when the
    run is cut short. The kernels' forward passes are counted in ``out_dir/passes.jsonl``,
    emptied first, and summarised in ``notebooks.json`` under ``forward_passes``.
    """
    paths = notebook_paths(notebooks_dir, only)
    parameters = check_parameters(parameters or {}, paths, notebook_paths(notebooks_dir)) if parameters else {}
    say = log or (lambda _text: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pass_log = out_dir / PASS_LOG
    pass_log.write_bytes(b"")
    (out_dir / numbers.NUMBERS).write_bytes(b"")  # the key numbers the kernels note for the book
    runs: list[NotebookRun] = []
    write_summary(out_dir, runs, [p.stem for p in paths], pass_log)
    for index, path in enumerate(paths):
        pending = [p.stem for p in paths[index + 1 :]]
        try:
            params = parameters_for(path, quick, backbone, parameters)
        except Exception as exc:  # an unreadable notebook: record it and go on
            run = NotebookRun(path.stem, out_dir / path.name, 0.0, {}, f"not readable: {type(exc).__name__}: {exc}")
        else:
            say(f"{path.name}: running ({', '.join(f'{k}={v!r}' for k, v in params.items()) or 'defaults'})")
            started = time.perf_counter()
            try:
                run = run_notebook(path, out_dir, params, timeout=timeout, pass_log=pass_log)
            except KeyboardInterrupt:  # Ctrl-C: this notebook is recorded as interrupted, the rest as pending
                runs.append(_interrupted(path, out_dir, params, time.perf_counter() - started))
                write_summary(out_dir, runs, pending, pass_log)
                say(f"{path.name}: interrupted after {runs[-1].seconds:.1f} s")
                raise
        runs.append(run)
        write_summary(out_dir, runs, pending, pass_log)
        say(
            f"{path.name}: {'ok' if run.ok else 'FAILED'} in {run.seconds:.1f} s"
            + (f" — {run.error}" if run.error else "")
        )
    if log:
        _log_the_end(log, runs, out_dir, pass_log)
    return runs


def _interrupted(path: Path, out_dir: Path, params: dict, seconds: float) -> NotebookRun:
    """The run of a notebook Ctrl-C stopped, naming the cell it was in."""
    cell, where = _last_started_cell(out_dir / path.name)
    error = f"interrupted (Ctrl-C) in {where}"
    return NotebookRun(path.stem, out_dir / path.name, seconds, dict(params), error, cell=cell, interrupted=True)


def _log_the_end(log: Callable[[str], None], runs: list[NotebookRun], out_dir: Path, pass_log: Path) -> None:
    """The runner's last lines: how many notebooks ran, which failed, the forward passes per network."""
    failed = [r.name + (" (timed out)" if r.timed_out else "") for r in runs if not r.ok]
    total = sum(r.seconds for r in runs)
    log(
        f"{len(runs) - len(failed)} of {len(runs)} notebooks ran in {total:.1f} s; outputs in {out_dir}"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    for net in _totals_or_empty(pass_log):
        key = net["key"]
        kinds = ", ".join(f"{kind}: {n}" for kind, n in net["kinds"].items())
        log(
            f"forward passes, {key['backbone']} at {key['image_size']} px: {net['computed']} photo images "
            f"through the frozen part for {net['distinct']} distinct photos"
            + (f" (ratio {net['ratio']:.2f})" if net["ratio"] is not None else "")
            + f" — {kinds}"
            + "".join(f"; not counted again, {kind}: {n}" for kind, n in net["continued"].items())
        )


def _totals_or_empty(pass_log: Path) -> list[dict]:
    try:
        return passes.totals(pass_log)
    except ValueError:  # a torn log: notebooks.json already says so
        return []
