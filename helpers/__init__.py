"""Helpers for the Transfer Learning Workbook: the notebooks tell the story, these do the work.

One module per idea; dependencies point one way (bottom to top):

- ``settings``, ``files``: where photos and weights live; atomic writes.
- ``checks``, ``data``, ``download``, ``datasets``: the data report, photo folders, stable
  splits and "N photos per class", safe downloads, the CIFAR-100 lion/tiger/bear default.
- ``backbones``, ``imagenet``: pretrained networks by name, weights, preprocessing, cut points;
  what ImageNet already knows about our classes.
- ``device``, ``pipeline``: CPU/GPU, mixed precision, tf.distribute; the tf.data input pipeline.
- ``surgery``: pop the top, add a head, freeze below a block, count trainable weights.
- ``cache``, ``train``, ``curves``, ``small_data``: the bottleneck cache at any cut point;
  head training and fine-tuning with Keras callbacks; live training curves; small-data runs.
- ``evaluate``, ``explain``, ``compare``, ``export``: metrics and galleries, Grad-CAM, the
  architecture comparison, SavedModel/TFLite export.
- ``plots``, ``widgets``, ``upload``: figures and ipywidgets for the notebooks.
- ``bench``, ``notebooks``, ``cli``: the benchmark, the headless notebook runner, ``python -m helpers``.
"""

__version__ = "0.1.0"
