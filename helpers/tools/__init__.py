"""Tools around the notebooks: the command line, the notebook runner, the book, the benchmark, the GPU check.

Modules: ``bench``, ``book``, ``cli``, ``cli_common``, ``cli_model``, ``cli_notebooks``, ``cli_train``,
``gpu_check``, ``lesson_export``, ``notebooks``;
each imported on first use.
"""

from helpers import submodules_on_demand

__getattr__ = submodules_on_demand(__name__)
