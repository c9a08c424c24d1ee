"""Helpers for the Transfer Learning Workbook: the notebooks tell the story, these do the work.

Grouped by idea; dependencies point one way (bottom to top). Notebooks write the whole name,
``helpers.show.plots.surgery(...)``, so extra code looks extra (as d2l's ``d2l.`` prefix does):

- ``settings``, ``files`` (top level): where photos, weights and the cache live; atomic writes.
- ``helpers.data``: ``checks`` (one file's checks), ``survey`` (a folder's files and classes), ``report``
  (the data report), ``splits`` (stable splits, "N photos per class"), ``folders`` (load a photo folder),
  ``download`` and ``archives`` (fetch by URL, unpack safely), ``openimages_index``, ``openimages`` and
  ``datasets`` (the default photos: Open Images, else CIFAR-100), ``photos`` (photos as arrays),
  ``pipeline`` (tf.data).
- ``helpers.model``: ``specs`` (the backbones' facts: one table, no Keras), ``backbones`` (pretrained networks
  by name), ``cuts`` (cut points and
  blocks), ``lesson`` (generated from the notebooks' ``#@save`` cells), ``imagenet`` (what ImageNet
  already knows about our classes), ``explain`` (Grad-CAM).
- ``helpers.store``: ``cache`` (the activation store), ``keys`` (what it hashes), ``entries`` (its checked
  file format), ``compute`` (missing entries computed), ``listing`` (what a cache root holds), ``passes``
  (the forward-pass log), ``counting`` (passes counted from the Keras side), ``numbers`` (key numbers noted
  for the book).
- ``helpers.run``: ``device`` (CPU/GPU, mixed precision, tf.distribute), ``config`` (a run's one
  configuration), ``train`` (the one training loop), ``restart`` (a model trained again, its traced step
  kept), ``prior`` (ImageNet's opinion multiplied in), ``runs`` (the run folder), ``evaluate``,
  ``small_data``, ``compare`` (backbones side by side), ``seeds`` (two settings over several draws, worded
  from the numbers).
- ``helpers.ship``: ``export`` (.keras, SavedModel, TFLite, ONNX), ``checks`` (each reloaded and compared).
- ``helpers.show``: ``plots``, ``results`` (the confusion matrix, galleries, backbones compared), ``heatmaps``
  (Grad-CAM figures), ``small_data`` (notebook 05's picture), ``curves``, ``widgets``, ``upload``.
- ``helpers.tools``: ``cli`` (``python -m helpers``: the parser table; the commands in ``cli_train``,
  ``cli_model``, ``cli_notebooks``, ``cli_common``; ``cli_checks``: the refusals made before Keras starts),
  ``notebooks`` (the headless runner), ``kernel`` (what the runner's kernels run first), ``parameters`` (what
  each notebook is given), ``clean`` (stored notebooks), ``nbval`` (a run's outputs checked; ``replay``, what its
  kernels run), ``book`` and ``book_index``, ``bench``, ``gpu_check``, ``lesson_export``.

A group's modules are imported on first use (``helpers.model.backbones`` imports that module then).
Importing the package has no side effect. :func:`start` starts Keras the workbook's way (the backend
chosen, TensorFlow's start-up lines dropped): every notebook's first cell calls it before ``import keras``,
``python -m helpers`` before a command that needs Keras (:func:`helpers.tools.cli.main`; a Ctrl-C during
the seconds Keras takes to import is one line and exit code 130), the notebook runner's kernels from
:mod:`helpers.tools.kernel`.
"""

import contextlib
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path

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
        import keras  # noqa: PLC0415 - Keras starts here, on request (helpers.start), never on import helpers

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415 - optional backend

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
    import jax  # noqa: PLC0415 - an optional backend, and only once Keras runs on it

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
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _keras_json_backend(environ=os.environ) -> tuple[str | None, str]:
    """The backend named in Keras' own config file (``$KERAS_HOME/keras.json`` or ``~/.keras/keras.json``)."""
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

    Call it before ``import keras`` (every notebook's first cell does; ``python -m helpers`` calls
    it before a command that needs Keras). ``import helpers`` alone changes nothing: not Keras, not the environment,
    not standard error. The notebook runner's kernels call it from :mod:`helpers.tools.kernel`.
    """
    global _started
    if _started:
        return
    choose_backend()
    _start_keras_quietly()
    _started = True
