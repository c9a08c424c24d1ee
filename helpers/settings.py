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
CACHE_ENV = "WORKBOOK_CACHE"  # the activation store's root; read in one place: helpers.store.cache.default_root
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir(default: str | os.PathLike | None = None) -> Path | None:
    """The photo folder: ``$WORKBOOK_DATA`` if set, else ``default`` (may be None)."""
    value = os.environ.get(DATA_ENV) or default
    return Path(value).expanduser() if value else None


def weights_dir() -> Path | None:
    """The folder of local weight files named by ``$WORKBOOK_WEIGHTS_DIR``, or None."""
    value = os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


def keras_cache_dir() -> Path:
    """Keras' own download cache for model weights (``$KERAS_HOME/models``, default ``~/.keras/models``).

    Keras reads ``KERAS_HOME`` once, when it is imported; so do we, through Keras.
    """
    from keras.src.backend.config import keras_home

    return Path(keras_home()) / "models"
