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

Stored notebooks carry no outputs, except the cells marked ``# NBVAL_CHECK_OUTPUT``
whose output nbval compares (``python -m helpers clean-notebooks``); :func:`nbval_replay`
lets nbval compare an existing run's outputs without executing the notebook again.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from helpers.files import atomic_path
from helpers.settings import PROJECT_ROOT
from helpers.tools import kernel

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
KERNEL_NAME = "python3"
#: The kernel's own log: critical lines only. Otherwise every kernel prints ipykernel's warning that it
#: "is running over TCP without encryption" (true of every local kernel on 127.0.0.1, so it says nothing),
#: and a kernel stopped by Ctrl-C can log "KeyboardInterrupt caught in kernel" (an ERROR line) before the
#: runner's own one-line summary. A cell's errors still reach the notebook and the runner's summary.
#: Before the notebook's first cell, each kernel runs :data:`helpers.tools.kernel.EXEC_LINE`: Keras started
#: quietly, its forward passes counted, backend and device noted for the book (``import helpers`` does none of it).
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL", f"--IPKernelApp.exec_lines={kernel.EXEC_LINE}"]

#: Quick-mode parameter overrides. ``"*"`` applies to every notebook that declares the
#: parameter in its ``parameters`` cell; a notebook's own entry (keyed by file stem) wins.
QUICK_PARAMETERS: dict[str, dict[str, object]] = {
    "*": {
        "QUICK": True,
        "BACKBONE": "mobilenet_v2",
        "WEIGHTS": "imagenet",  # found in $WORKBOOK_WEIGHTS_DIR (the 1.0_224 no-top file)
        "IMAGE_SIZE": 96,
        "PER_CLASS": 5,
        "EPOCHS": 3,
    },
    "01_pretrained_model": {"CLASSIFIER": "mobilenet_0.25", "PER_CLASS": 2},  # MobileNet, alpha 0.25
    "02_pop_and_add_head": {"BACKBONE": "mobilenet_v2"},
    "03_train_the_head": {"BACKBONE": "mobilenet_v2", "EPOCHS": 20},
    "04_fine_tune": {"BACKBONE": "mobilenet_v2", "HEAD_EPOCHS": 20, "FINE_TUNE_EPOCHS": 2},
    "05_small_data_short_time": {
        "BACKBONE": "mobilenet_v2",
        "PER_CLASS": 5,
        "EPOCHS": 10,
        "PER_CLASS_LIST": [1, 10],
        "SEEDS": [0, 1],
        "SCRATCH_IMAGE_SIZE": 64,
        "SCRATCH_EPOCHS": 5,
        "SCRATCH_SEEDS": 1,
        "SCRATCH_SECONDS": 10,
    },
    "05a_your_photos_and_augmentation": {
        "BACKBONE": "MobileNetV2",
        "EPOCHS": 10,
        "PER_CLASS_LIST": [1, 2],
        "SMALL_IMAGE_SIZE": 96,  # the quick run's size already: its features are stored
        "SMALL_PER_CLASS_LIST": [3],
    },
    "06_evaluate_and_explain": {"CLASSIFIER": "mobilenet_0.25", "EPOCHS": 20, "PER_CLASS": 1},
    "07_compare_architectures": {
        "BACKBONES": ["mobilenet_v2", "mobilenet_0.25", "resnet50"],
        "ALLOW_DOWNLOAD": False,
        "EPOCHS": 20,
    },
    "08_export_and_predict": {"EPOCHS": 20},
}


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


def declared_parameters(path: str | os.PathLike) -> dict[str, object]:
    """The names and default values (as source text) of a notebook's ``parameters`` cell."""
    from papermill.translators import PythonTranslator

    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return {p.name: p.default for p in PythonTranslator.inspect(cells[0])} if cells else {}


def parameters_for(
    path: str | os.PathLike, quick: bool = False, backbone: str | None = None, parameters: dict | None = None
) -> dict[str, object]:
    """What to inject into one notebook: quick overrides < ``backbone`` < explicit ``parameters``.

    Only parameters the notebook declares are injected. ``--backbone`` sets ``BACKBONE`` and
    notebook 01's ``CLASSIFIER``, so one backbone runs through the whole workbook; ``BACKBONE`` is
    written as the workbook names it (``MobileNetV2`` → ``mobilenet_v2``, the one spelling the
    notebooks print), and the lesson's load cells resolve it (``helpers.model.backbones.application``).
    """
    from helpers.model.backbones import get_spec

    path = Path(path)
    declared = declared_parameters(path)
    chosen: dict[str, object] = {}
    if quick:
        chosen.update(QUICK_PARAMETERS.get("*", {}))
        chosen.update(QUICK_PARAMETERS.get(path.stem, {}))
    if backbone is not None:
        chosen["BACKBONE"] = get_spec(backbone).name
        chosen["CLASSIFIER"] = backbone
    chosen.update(parameters or {})
    return {k: v for k, v in chosen.items() if k in declared}


def parse_value(text: str) -> object:
    """A ``-p NAME VALUE`` value: a Python literal (``3``, ``None``, ``'a'``, ``[1, 2]``) or else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = type(None)

#: Parameters that take more types than their default values show (each parameters cell's comment says so).
#: Any other name takes the types of its defaults across the notebooks; one whose defaults are all None, anything.
PARAMETER_TYPES: dict[str, tuple[type, ...]] = {
    "FINE_TUNE_FROM": (int, str, _NONE),  # 04: how many top blocks, a block name ("mixed8"), or None
    "IMAGE_SIZE": (int, _NONE),  # None: the backbone's own size
    "PER_CLASS": (int, _NONE),  # None: all photos
    "WEIGHTS": (str, _NONE),  # "imagenet", a file, or None (random)
    "DATA_DIR": (str, _NONE),
    "CACHE_DIR": (str, _NONE),
    "MODEL_FILE": (str, _NONE),
}


def _type_name(kinds: set[type]) -> str:
    names = {bool: "True or False", int: "a whole number", float: "a number", str: "text", list: "a list",
             dict: "a dict", _NONE: "None"}  # fmt: skip
    return " or ".join(sorted(names.get(k, k.__name__) for k in kinds))


def _convert(value: object, kinds: set[type], items: list[object] = ()) -> object:
    """``value`` (text from the command line, or a Python value) as one of ``kinds``; ValueError if it is none.

    ``items``: the default lists' elements, whose types a list's elements must have.
    """
    parsed = parse_value(value) if isinstance(value, str) else value
    typed = kinds - {_NONE}
    if not typed:  # declared as None everywhere: anything sensible (a literal, or else text)
        return parsed
    if parsed is None and _NONE in kinds:
        return None
    if bool in typed:
        if isinstance(parsed, bool):
            return parsed
        if not isinstance(parsed, float) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
    if int in typed and isinstance(parsed, int) and not isinstance(parsed, bool):
        return parsed
    if float in typed and isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
        return float(parsed)
    if list in typed and isinstance(parsed, (list, tuple)):
        if not items:
            return list(parsed)
        kinds_of_items = {type(item) for item in items}
        try:
            return [_convert(item, kinds_of_items) for item in parsed]
        except ValueError:
            raise ValueError(f"must be a list of {_type_name(kinds_of_items)}, got {value!r}") from None
    if dict in typed and isinstance(parsed, dict):
        return parsed
    if str in typed and isinstance(value, str):
        return parsed if isinstance(parsed, str) else value  # text as typed: "3" stays "3" for a name
    raise ValueError(f"must be {_type_name(kinds)}, got {value!r}")


def _default_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):  # an expression: its type is not known, so anything goes
        return None


def check_parameters(
    parameters: dict, paths: Iterable[str | os.PathLike], all_paths: Iterable[str | os.PathLike] | None = None
) -> dict[str, object]:
    """``parameters`` checked against the ``parameters`` cells of the notebooks ``paths``, and converted.

    A name no notebook in ``paths`` declares is refused (with the closest declared name); a
    value is converted to the type of the name's default values (in ``all_paths``, default:
    ``paths``), or to :data:`PARAMETER_TYPES` — ``"5"`` to 5 for ``PER_CLASS = 5``, ``"yes"`` to
    True for a bool; a name whose defaults are all None accepts any literal or text.
    Raises ValueError with one line naming every refused parameter and what it must be.
    """
    paths = [Path(p) for p in paths]
    declared = {p.stem: declared_parameters(p) for p in paths}
    defaults: dict[str, list[object]] = {}
    for p in [Path(q) for q in all_paths] if all_paths is not None else paths:
        for name, text in (declared[p.stem] if p.stem in declared else declared_parameters(p)).items():
            defaults.setdefault(name, []).append(_default_value(text))
    known = sorted({name for names in declared.values() for name in names})
    where = ", ".join(declared) if len(declared) <= 3 else f"any of the {len(declared)} notebooks selected"
    problems, out = [], {}
    for name, value in parameters.items():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"they declare {', '.join(known)}"
            problems.append(f"-p {name}: not a parameter of {where} ({hint})")
            continue
        values = defaults.get(name, [None])
        kinds = set(PARAMETER_TYPES.get(name, {type(v) for v in values}))
        items = [item for v in values if isinstance(v, list) for item in v]
        try:
            out[name] = _convert(value, kinds, items)
        except ValueError as exc:
            problems.append(f"-p {name}: {exc}")
    if problems:
        raise ValueError("; ".join(problems) + "; nothing was run")
    return out


@contextlib.contextmanager
def kernel_environment(pass_log: str | os.PathLike | None = None, source: str | None = None):
    """Let the notebook kernels import ``helpers`` and keep TensorFlow's C++ logging quiet.

    With ``pass_log``, kernels started inside append their forward-pass records there
    (``$WORKBOOK_PASS_LOG``, :mod:`helpers.store.passes`), tagged with ``source``, and their key
    numbers for the book to ``numbers.jsonl`` beside it (``$WORKBOOK_NUMBERS``, :mod:`helpers.tools.book`).
    """
    from helpers.store import passes
    from helpers.tools import book

    names = ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL", passes.LOG_ENV, passes.SOURCE_ENV, book.NUMBERS_ENV)
    saved = {k: os.environ.get(k) for k in names}
    paths = [str(PROJECT_ROOT)] + [p for p in (saved["PYTHONPATH"] or "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if pass_log is not None:
        os.environ[passes.LOG_ENV] = str(Path(pass_log).resolve())
        os.environ[book.NUMBERS_ENV] = str(Path(pass_log).resolve().with_name(book.NUMBERS))
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
    import papermill
    from nbclient.exceptions import CellTimeoutError

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
                kernel_manager_class=_tracked_kernel_manager(),
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
_TRACKED = None


def _tracked_kernel_manager():
    """jupyter_client's kernel manager, noting each kernel it starts in :data:`_LIVE_KERNELS`."""
    global _TRACKED
    if _TRACKED is None:
        from jupyter_client.manager import AsyncKernelManager

        class TrackedKernelManager(AsyncKernelManager):
            async def start_kernel(self, **kw):
                await super().start_kernel(**kw)
                _LIVE_KERNELS.add(self)

        _TRACKED = TrackedKernelManager
    return _TRACKED


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
    from helpers.files import write_json
    from helpers.store import passes

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


def run_notebooks(
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
    from helpers.tools import book

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pass_log = out_dir / PASS_LOG
    pass_log.write_bytes(b"")
    (out_dir / book.NUMBERS).write_bytes(b"")  # the key numbers the kernels note for the book
    runs: list[NotebookRun] = []
    write_summary(out_dir, runs, [p.stem for p in paths], pass_log)
    for index, path in enumerate(paths):
        try:
            params = parameters_for(path, quick, backbone, parameters)
        except Exception as exc:  # an unreadable notebook: record it and go on
            run = NotebookRun(path.stem, out_dir / path.name, 0.0, {}, f"not readable: {type(exc).__name__}: {exc}")
        else:
            if log:
                shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults"
                log(f"{path.name}: running ({shown})")
            started = time.perf_counter()
            try:
                run = run_notebook(path, out_dir, params, timeout=timeout, pass_log=pass_log)
            except KeyboardInterrupt:  # Ctrl-C: this notebook is recorded as interrupted, the rest as pending
                seconds = time.perf_counter() - started
                cell, where = _last_started_cell(out_dir / path.name)
                run = NotebookRun(path.stem, out_dir / path.name, seconds, dict(params), f"interrupted (Ctrl-C) in "
                                  f"{where}", cell=cell, interrupted=True)  # fmt: skip
                runs.append(run)
                write_summary(out_dir, runs, [p.stem for p in paths[index + 1 :]], pass_log)
                if log:
                    log(f"{path.name}: interrupted after {seconds:.1f} s")
                raise
        runs.append(run)
        write_summary(out_dir, runs, [p.stem for p in paths[index + 1 :]], pass_log)
        if log:
            log(
                f"{path.name}: {'ok' if run.ok else 'FAILED'} in {run.seconds:.1f} s"
                + (f" — {run.error}" if run.error else "")
            )
    if log:
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
    return runs


def _totals_or_empty(pass_log: Path) -> list[dict]:
    from helpers.store import passes

    try:
        return passes.totals(pass_log)
    except ValueError:  # a torn log: notebooks.json already says so
        return []


# --- checking outputs with nbval without executing twice ----------------------------


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
    import json

    import papermill

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
                f"from helpers.notebooks import replay_outputs\n"
                f"replay_outputs({json.dumps(run.outputs)!r})"
            )
        cell.source = "\n".join(markers + [body]).strip() or "pass"
    return nb


def replay_outputs(outputs_json: str) -> None:
    """Emit a cell's recorded outputs again, in order, in a running kernel (see :func:`nbval_replay`)."""
    import json
    import sys

    from IPython.display import publish_display_data

    for output in json.loads(outputs_json):
        if output["output_type"] == "stream":
            stream = sys.stderr if output["name"] == "stderr" else sys.stdout
            stream.write(output["text"])
            stream.flush()
        elif output["output_type"] in ("display_data", "execute_result"):
            publish_display_data(output["data"], output.get("metadata", {}))


# --- keeping stored notebooks clean -------------------------------------------------


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
