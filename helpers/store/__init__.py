"""The activation store: a frozen part's outputs kept on disk, and the count of forward passes.

Modules: ``cache``, ``keys``, ``entries``, ``compute``, ``listing``, ``passes``;
each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
