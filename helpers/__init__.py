"""Helpers for the Transfer Learning Workbook: the notebooks tell the story, these do the work.

One module per idea; dependencies point one way (bottom to top):

- ``settings``, ``files``: where photos and weights live; atomic writes.
- ``checks``, ``data``, ``download``, ``datasets``: the data report, photo folders, stable
  splits and "N photos per class", safe downloads, the CIFAR-100 lion/tiger/bear default.
- ``backbones``, ``imagenet``: pretrained networks by name, weights, preprocessing, cut points;
  what ImageNet already knows about our classes.
- ``device``, ``pipeline``: CPU/GPU, mixed precision, tf.distribute; the tf.data input pipeline.
- ``lesson`` (generated from the notebooks' ``#@save`` cells by ``lesson_export``), ``cuts``: the head,
  compile, fit keeping the best epoch, unfreezing, splitting; cut points and blocks on public API.
- ``photos``, ``cache``, ``train``, ``runs``, ``curves``, ``small_data``: photos as arrays; the activation cache;
  head training and fine-tuning with Keras callbacks; live training curves; small-data runs.
- ``evaluate``, ``explain``, ``compare``, ``export``: metrics and galleries, Grad-CAM, the
  architecture comparison, SavedModel/TFLite export.
- ``plots``, ``widgets``, ``upload``: figures and ipywidgets for the notebooks.
- ``bench``, ``notebooks``, ``book``, ``cli``: the benchmark, the headless notebook runner, the executed
  notebooks as a static HTML book, ``python -m helpers``.
"""

import contextlib
import os
from collections.abc import Iterator

__version__ = "0.1.0"


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


def _figures_as_png_in_notebooks() -> None:
    """In a Jupyter kernel, a matplotlib ``Figure`` a cell returns is shown as a PNG, not ``<Figure size …>``.

    ``curves.plot_history`` returns a Figure made without pyplot (notebooks 03 and 04 show it as
    the cell's result). IPython draws Figures only once ``%matplotlib inline`` has registered its
    formatter, which this ipykernel and matplotlib-inline did not do by themselves: the executed
    notebooks (and their book, ``helpers.book``) held the text ``<Figure size 900x340 with 2 Axes>``.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or shell.__class__.__name__ != "ZMQInteractiveShell":
        return
    from IPython.core.pylabtools import select_figure_formats

    select_figure_formats(shell, {"png"})


_start_keras_quietly()
_figures_as_png_in_notebooks()

if os.environ.get("WORKBOOK_PASS_LOG"):  # the notebook runner counts forward passes (helpers.passes)
    from . import passes

    passes.count_keras_calls()
if os.environ.get("WORKBOOK_NUMBERS"):  # the runner's kernels note backend and device for the book (helpers.book)
    from . import book

    book.record_setup()
