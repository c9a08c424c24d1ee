"""The network: backbones and their facts, cut points, the lesson's Keras code, ImageNet labels, Grad-CAM.

Modules: ``backbones``, ``cuts``, ``explain``, ``imagenet``, ``lesson``;
each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
