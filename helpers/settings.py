"""Where the workbook finds photos and weight files (notebook 00 explains these).

Two environment variables are the contract between the notebooks, the command line,
the tests and CI:

``WORKBOOK_DATA``
    A photo folder (``DIR/<class>/*.jpg`` or ``DIR/{train,val}/<class>/*.jpg``).
``WORKBOOK_WEIGHTS_DIR``
    A folder of Keras weight files, searched before any download.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "WORKBOOK_DATA"
WEIGHTS_ENV = "WORKBOOK_WEIGHTS_DIR"
CACHE_ENV = "WORKBOOK_CACHE"  # the activation store's root; read in one place: cache_root
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir(default: str | os.PathLike | None = None) -> Path | None:
    """The photo folder: ``$WORKBOOK_DATA`` if set, else ``default`` (may be None)."""
    value = os.environ.get(DATA_ENV) or default
    return Path(value).expanduser() if value else None


def weights_dir() -> Path | None:
    """The folder of local weight files named by ``$WORKBOOK_WEIGHTS_DIR``, or None."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """Where the activation store lives: ``$WORKBOOK_CACHE``, else ``~/.cache/transfer-workbook/bottlenecks``."""
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transfer-workbook" / "bottlenecks"


def keras_home() -> Path:
    """Keras' own folder: ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` when home is read-only).

    The rule ``keras.utils.get_file`` follows (Keras applies it once, when it is imported), on public
    Python only: Keras names no public accessor for it.
    """
    value = os.environ.get("KERAS_HOME")
    if value:
        return Path(value)
    home = Path("~").expanduser()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def keras_cache_dir() -> Path:
    """Keras' own download cache for model weights (``$KERAS_HOME/models``, default ``~/.keras/models``)."""
    return keras_home() / "models"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), False in scripts."""
    try:
        # optional (Jupyter only), and loaded only when asked: every `import helpers` reads this module
        from IPython import get_ipython  # noqa: PLC0415
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
