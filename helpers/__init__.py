"""Helpers for the Transfer Learning Workbook: the notebooks tell the story, these do the work.

One module per idea, dependencies pointing one way:

- ``settings``, ``files``: where photos and weights live; atomic writes.
- ``data``: photo folders, splits, "N photos per class", loading pixels.
- ``backbones``: pretrained networks by name, weights, preprocessing, cut points.
- ``surgery``: pop the top, add a head, freeze below a block, count trainable weights.
- ``train``: head training and fine-tuning with Keras callbacks; the ``train`` command.
- ``cli``: ``python -m helpers …``.
"""

__version__ = "0.1.0"
