"""Helpers for the Transfer Learning Workbook: the notebooks tell the story, these do the work.

One module per idea; dependencies point one way (bottom to top):

- ``settings``, ``files``: where photos and weights live; atomic writes.
- ``checks``, ``data``, ``download``, ``datasets``: the data report, photo folders, stable
  splits and "N photos per class", safe downloads, the CIFAR-100 lion/tiger/bear default.
- ``backbones``, ``imagenet``: pretrained networks by name, weights, preprocessing, cut points;
  what ImageNet already knows about our classes.
- ``device``, ``pipeline``: CPU/GPU, mixed precision, tf.distribute; the tf.data input pipeline.
- ``lesson`` (generated from the notebooks' ``#@save`` cells by ``lesson_export``), ``cuts``: the head, compile, fit keeping the best epoch, unfreezing, splitting; cut points and blocks on public API.
- ``photos``, ``cache``, ``train``, ``runs``, ``curves``, ``small_data``: photos as arrays; the activation cache;
  head training and fine-tuning with Keras callbacks; live training curves; small-data runs.
- ``evaluate``, ``explain``, ``compare``, ``export``: metrics and galleries, Grad-CAM, the
  architecture comparison, SavedModel/TFLite export.
- ``plots``, ``widgets``, ``upload``: figures and ipywidgets for the notebooks.
- ``bench``, ``notebooks``, ``cli``: the benchmark, the headless notebook runner, ``python -m helpers``.
"""

import os

__version__ = "0.1.0"


def _start_keras_quietly() -> None:
    """Import Keras (and TensorFlow) without TensorFlow's C++ start-up lines in notebook outputs.

    TensorFlow writes them to the process's standard error while it loads, before its own
    log settings apply; they say nothing a learner can act on. Errors still raise as usual.
    Python-side retracing warnings are turned down to errors for the same reason.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_start_keras_quietly()
