"""Helpers for the Transfer Learning Workbook: the notebooks tell the story, these do the work.

Grouped by idea; dependencies point one way (bottom to top). Notebooks write the whole name,
``helpers.show.plots.surgery(...)``, so extra code looks extra (as d2l's ``d2l.`` prefix does):

- ``settings``, ``files`` (top level): where photos, weights and the cache live; atomic writes.
- ``helpers.data``: ``checks`` (the data report), ``folders`` (photo folders, stable splits, "N photos
  per class"), ``download``, ``openimages`` and ``datasets`` (the default photos: Open Images, else
  CIFAR-100), ``photos`` (photos as arrays), ``pipeline`` (tf.data).
- ``helpers.model``: ``backbones`` (pretrained networks by name, their facts), ``cuts`` (cut points and
  blocks), ``lesson`` (generated from the notebooks' ``#@save`` cells), ``imagenet`` (what ImageNet
  already knows about our classes), ``explain`` (Grad-CAM).
- ``helpers.store``: ``cache`` (the activation store), ``keys`` (what it hashes), ``entries`` (its checked
  file format), ``compute`` (missing entries computed), ``listing`` (what a cache root holds), ``passes``
  (forward passes counted).
- ``helpers.run``: ``device`` (CPU/GPU, mixed precision, tf.distribute), ``train``, ``runs`` (the run
  folder), ``evaluate``, ``small_data``, ``compare``.
- ``helpers.ship``: ``export`` (.keras, SavedModel, TFLite, ONNX, each checked).
- ``helpers.show``: ``plots``, ``curves``, ``heatmaps`` (Grad-CAM figures), ``widgets``, ``upload``.
- ``helpers.tools``: ``cli`` (``python -m helpers``), ``notebooks`` (the headless runner), ``book``,
  ``bench``, ``gpu_check``, ``lesson_export``.

A group's modules are imported on first use (``helpers.model.backbones`` imports that module then).
Importing the package starts Keras the workbook's way (:func:`start`: the backend chosen, TensorFlow's
start-up lines dropped); ``python -m helpers`` calls :func:`start` itself instead, from ``__main__``,
where a Ctrl-C during the seconds Keras takes to import is one line and exit code 130.
"""

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterator

__version__ = "0.1.0"

GROUPS = ("data", "model", "store", "ship", "run", "show", "tools")
"""The subpackages, bottom to top (tests/test_layout.py: a module imports only its own group and those below)."""


def submodules_on_demand(package: str) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``package.<name>`` the first time it is asked for."""

    def __getattr__(name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


__getattr__ = submodules_on_demand(__name__)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop what C++ libraries write to the process's standard error meanwhile (Python errors still raise).

    TensorFlow and TFLite write start-up lines there (oneDNN, XNNPACK) before their own log
    settings apply; in a notebook they land in the output and say nothing a learner can act on.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _start_keras_quietly() -> None:
    """Import Keras (and TensorFlow) without TensorFlow's start-up lines; retracing warnings turned down too."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # PyTorch's CPU threads (OpenMP) spin while they wait for work; on a busy machine (two cores
    # shared with other processes, as here and in CI) the spinning threads starve each other:
    # MobileNetV2's predict at 96 px took 11.9 s instead of 1.6 s (measured here, load ~10 on 2
    # cores). PASSIVE makes them sleep instead. It must be set before torch is imported; setting
    # OMP_WAIT_POLICY yourself wins, and TensorFlow's and JAX's own thread pools ignore it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with quiet_native_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
        elif keras.backend.backend() == "jax":
            _keep_jax_compilations()


JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"


def _keep_jax_compilations() -> None:
    """Keep JAX's compiled XLA programs on disk, so the next kernel or command reuses them.

    On the CPU, JAX compiles one small program for every new shape it meets, starting with
    each layer's weight initialiser: building MobileNet took about 20 s under JAX against
    1 s under TensorFlow, nearly all of it compiling, and every notebook builds its models
    anew. JAX's persistent compilation cache (every program, however quick to compile) in
    ``~/.cache/transfer-workbook/jax`` (beside the activation cache) brings a second build
    down to about 2 s. ``$JAX_COMPILATION_CACHE_DIR``, if set, is left to JAX (empty: off).
    """
    if JAX_CACHE_ENV in os.environ:
        return
    from pathlib import Path

    import jax

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    jax.config.update("jax_compilation_cache_dir", str(base / "transfer-workbook" / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
"""The Keras backends the workbook runs on, and the module each needs."""
REQUIREMENTS = {"tensorflow": "requirements.txt", "jax": "requirements-jax.txt", "torch": "requirements-torch.txt"}


class BackendUnavailable(ImportError):
    """No usable Keras backend, or an ambiguous choice: the one-line message says what to set or install."""


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _keras_json_backend(environ=os.environ) -> tuple[str | None, str]:
    """The backend named in Keras' own config file (``$KERAS_HOME/keras.json`` or ``~/.keras/keras.json``)."""
    import json

    home = environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    path = os.path.join(os.path.expanduser(home), "keras.json")
    try:
        with open(path) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None, path
    return (backend if isinstance(backend, str) else None), path


def choose_backend(installed=_installed, environ=os.environ, say=None) -> str:
    """Which Keras backend to start, decided before Keras is imported (Keras reads ``KERAS_BACKEND`` then).

    ``KERAS_BACKEND``, or a backend other than TensorFlow named in Keras' ``keras.json``, is used
    as it is (if its module is missing: :class:`BackendUnavailable`, one line). Otherwise TensorFlow
    when it is installed; without TensorFlow, the one other backend installed (jax or torch) is
    set in ``KERAS_BACKEND`` and ``say`` gets one line saying so (default: standard error).
    Anything else is :class:`BackendUnavailable`, saying what to set or install.
    """

    def missing(backend: str, where: str) -> BackendUnavailable:
        present = [b for b, m in BACKEND_MODULES.items() if installed(m)]
        instead = f"set KERAS_BACKEND={' or '.join(present)}" if present else "no backend is installed"
        return BackendUnavailable(
            f"{where} is {backend}, but {BACKEND_MODULES[backend]} is not installed in {sys.prefix}: "
            f"pip install -r {REQUIREMENTS[backend]}, or {instead}"
        )

    given = environ.get("KERAS_BACKEND")
    if given:
        if given in BACKEND_MODULES and not installed(BACKEND_MODULES[given]):
            raise missing(given, "KERAS_BACKEND")
        return given
    configured, path = _keras_json_backend(environ)
    if configured and configured != "tensorflow":  # "tensorflow" is what Keras writes there by itself
        if configured in BACKEND_MODULES and not installed(BACKEND_MODULES[configured]):
            raise missing(configured, f"the backend in {path}")
        return configured
    if installed("tensorflow"):
        return "tensorflow"
    others = [b for b in ("jax", "torch") if installed(BACKEND_MODULES[b])]
    if len(others) == 1:
        environ["KERAS_BACKEND"] = others[0]
        line = (
            f"KERAS_BACKEND is not set and TensorFlow is not installed: using {others[0]}, "
            "the one Keras backend installed (set KERAS_BACKEND to choose)"
        )
        (say or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
        return others[0]
    if others:
        raise BackendUnavailable(
            "KERAS_BACKEND is not set and TensorFlow is not installed, but both jax and torch are: "
            "set KERAS_BACKEND=jax or KERAS_BACKEND=torch"
        )
    raise BackendUnavailable(
        f"no Keras backend is installed in {sys.prefix}: pip install -r requirements.txt (TensorFlow), "
        "requirements-jax.txt (JAX) or requirements-torch.txt (PyTorch)"
    )


_started = False


def start() -> None:
    """Start Keras the workbook's way, once: choose the backend, then import Keras quietly.

    With ``$WORKBOOK_PASS_LOG`` set (the notebook runner's kernels), Keras' ``fit``/``evaluate``/
    ``predict`` calls are counted too (:mod:`helpers.store.passes`).
    """
    global _started
    if _started:
        return
    choose_backend()
    _start_keras_quietly()
    if os.environ.get("WORKBOOK_PASS_LOG"):  # the notebook runner counts forward passes (helpers.store.passes)
        from helpers.store import passes

        passes.count_keras_calls()
    if os.environ.get("WORKBOOK_NUMBERS"):  # the runner's kernels note backend and device (the book)
        from helpers.tools import book

        book.record_setup()
    _started = True


def _as_command() -> bool:
    """True while ``python -m helpers`` imports this package (to run ``helpers/__main__.py`` next).

    Python sets ``sys.argv[0]`` to ``-m`` while it imports the package of a ``-m`` module;
    ``sys.orig_argv`` says which module (``python -m helpers.other`` still starts Keras here).
    """
    if getattr(sys, "argv", None) is None or sys.argv[:1] != ["-m"]:
        return False
    args = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(args[1:], 1):
        if arg == "-m":
            return args[i + 1 : i + 2] == [__name__]
        if arg.startswith("-m"):
            return arg[2:] == __name__
    return False


if not _as_command():  # python -m helpers starts Keras in __main__, where Ctrl-C is caught
    start()
