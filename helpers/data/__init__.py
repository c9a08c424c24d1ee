"""The photos: folders and their checks, stable splits, downloads (Open Images, else CIFAR-100), arrays, tf.data.

Modules: ``archives``, ``checks``, ``datasets``, ``download``, ``folders``, ``openimages``, ``openimages_index``,
``photos``, ``pipeline``, ``report``, ``splits``, ``survey``; each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
