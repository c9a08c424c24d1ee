"""Shipping a trained model: export to .keras, SavedModel, TFLite and ONNX, each checked.

Modules: ``export``;
each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
