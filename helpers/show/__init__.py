"""Showing: figures, live training curves, ipywidgets.

Modules: ``curves``, ``plots``, ``small_data``, ``upload``, ``widgets``;
each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
