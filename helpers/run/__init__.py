"""A run: devices, training, the run folder, evaluation, small-data runs and comparisons.

Modules: ``compare``, ``config``, ``device``, ``evaluate``, ``runs``, ``small_data``, ``train``;
each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
