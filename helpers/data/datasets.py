"""Where the photos come from by default: real Open Images photos, else CIFAR-100 (upscaled, LOW-RESOLUTION).

Notebook 00 calls :func:`get_photos` to say where the workbook's photos come from:

1. a folder you pass (``DATA_DIR`` / ``--data``), else
2. ``$WORKBOOK_DATA``, else
3. real lion, tiger and bear photos from Open Images V7 (CC BY 2.0, credited in
   ``ATTRIBUTION.md``), fetched once into ``data/lion-tiger-bear-openimages/`` and checked
   against their manifest on every later use (:mod:`helpers.data.openimages`), else — no network, or
   the host unreachable — one line saying so, and
4. the CIFAR-100 subset below, built on first use under the project's ``data/`` folder.

CIFAR-100 (Krizhevsky, 2009) has 500 training and 100 test images of each of its 100
classes, among them ``bear`` (3), ``lion`` (43) and ``tiger`` (88). They are **32×32
pixels**: we upscale them (to 128 px by default) so the backbones accept them, which adds
no detail. Expect lower accuracy than with real photos; the folder's name, its
``README.txt`` and ``dataset.json`` all say so.

With internet the archive comes through Keras' own loader,
``keras.datasets.cifar100.load_data(label_mode="fine")`` (cached in ``~/.keras/datasets``).
Behind a firewall, pass ``archive=`` a copy of ``cifar-100-python.tar.gz`` (checked
against its published sha256) or ``url=`` a mirror.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import files, settings
from helpers.data import openimages
from helpers.data.download import ChecksumError, download, sha256_of

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
CIFAR100_CLASSES = {"bear": 3, "lion": 43, "tiger": 88}
"""Fine-label index of each class, in the order of the archive's ``meta`` ``fine_label_names``."""
DEFAULT_SIZE = 128
DATA_ROOT = settings.PROJECT_ROOT / "data"


class DataUnavailableError(RuntimeError):
    """No photos could be found or fetched; the message lists the ways to provide them."""


def cifar_folder_name(size: int = DEFAULT_SIZE) -> str:
    """The subset's folder name: it says what the photos really are (32 px, upscaled)."""
    return f"cifar100-lion-tiger-bear-32px-upscaled-to-{size}px"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Read CIFAR's pickles without letting them run code: only numpy arrays may be rebuilt."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name} in a CIFAR file (corrupt or malicious?)")


def _load_pickle(stream) -> dict:
    return {
        k.decode() if isinstance(k, bytes) else k: v
        for k, v in _NumpyOnlyUnpickler(stream, encoding="bytes").load().items()
    }


def _batch(entry: dict) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(entry["data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(entry["fine_labels"], np.int64).reshape(-1, 1)


def read_cifar100_archive(archive: str | os.PathLike) -> tuple[tuple, tuple, list[str]]:
    """``(x_train, y_train), (x_test, y_test), fine_label_names`` from ``cifar-100-python.tar.gz``.

    The same arrays ``keras.datasets.cifar100.load_data(label_mode="fine")`` returns,
    read straight from the archive (no extraction).
    """
    with tarfile.open(archive) as tar:

        def member(name: str) -> dict:
            try:
                stream = tar.extractfile(f"cifar-100-python/{name}")
            except KeyError:
                stream = None
            if stream is None:
                raise DataUnavailableError(f"{archive} has no cifar-100-python/{name}: not a CIFAR-100 archive")
            with stream:
                return _load_pickle(stream)

        train, test, meta = member("train"), member("test"), member("meta")
    names = [n.decode() if isinstance(n, bytes) else n for n in meta["fine_label_names"]]
    return _batch(train), _batch(test), names


def _keras_meta_names() -> list[str] | None:
    """The label names Keras' cached copy of CIFAR-100 carries, if it is on disk."""
    homes = [
        os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"),
        os.path.join(tempfile.gettempdir(), ".keras"),
    ]
    for home in homes:
        meta = Path(home) / "datasets" / "cifar-100-python-target" / "cifar-100-python" / "meta"
        if meta.is_file():
            with open(meta, "rb") as f:
                names = _load_pickle(f)["fine_label_names"]
            return [n.decode() if isinstance(n, bytes) else n for n in names]
    return None


def _not_available(reason: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"could not get CIFAR-100 ({reason}). Give the workbook photos in one of these ways: "
        f"set WORKBOOK_DATA (or pass DATA_DIR / --data) to a folder of your own photos (see data/README.md); "
        f"or download {CIFAR100_URL} on a machine with internet and pass archive=PATH "
        f"(sha256 {CIFAR100_SHA256}); or pass url= a mirror of it"
    )


def load_cifar100(
    archive: str | os.PathLike | None = None,
    url: str | None = None,
    sha256: str | None = CIFAR100_SHA256,
    download_dir: str | os.PathLike | None = None,
) -> tuple[tuple, tuple, list[str] | None]:
    """CIFAR-100 with fine labels: ``(x_train, y_train), (x_test, y_test), label names or None``.

    Default: Keras' loader (downloads once into Keras' cache). ``archive=`` a local
    ``cifar-100-python.tar.gz`` or ``url=`` a mirror (downloaded into ``download_dir``,
    default ``data/downloads``) is verified against ``sha256``.
    """
    if url is not None:
        target = Path(download_dir or DATA_ROOT / "downloads") / "cifar-100-python.tar.gz"
        archive = download(url, target, sha256=sha256)
    elif archive is not None:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise _not_available(f"{archive} does not exist")
        if sha256 is not None and sha256_of(archive) != sha256:
            raise ChecksumError(
                f"{archive}'s sha256 is not {sha256}: an incomplete or different file; download it again"
            )
    if archive is not None:
        return read_cifar100_archive(archive)
    try:
        import keras  # noqa: PLC0415 (keras starts its backend, TensorFlow: only this fallback needs it)

        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar100.load_data(label_mode="fine")
    except Exception as exc:  # Keras raises a bare Exception("URL fetch failure …") when offline
        raise _not_available(f"{type(exc).__name__}: {exc}") from exc
    return (x_train, y_train), (x_test, y_test), _keras_meta_names()


def _check_label_names(names: list[str] | None) -> None:
    if names is None:
        return
    wrong = {
        c: names[i] if i < len(names) else None for c, i in CIFAR100_CLASSES.items() if i >= len(names) or names[i] != c
    }
    if wrong:
        raise DataUnavailableError(f"unexpected CIFAR-100 label names at the lion/tiger/bear indices: {wrong}")


def build_cifar_photos(
    dest: str | os.PathLike | None = None,
    size: int = DEFAULT_SIZE,
    archive: str | os.PathLike | None = None,
    url: str | None = None,
    sha256: str | None = CIFAR100_SHA256,
    download_dir: str | os.PathLike | None = None,
) -> Path:
    """Write CIFAR-100's bear/lion/tiger as ``dest/{train,val}/<class>/*.jpg`` upscaled to ``size``; return dest.

    CIFAR's train set becomes ``train/`` (500 per class), its test set ``val/`` (100 per
    class). A finished folder (it has ``dataset.json``) is reused; the folder is built in
    a temporary folder and renamed, so it is never half-written.
    """
    dest = Path(dest).expanduser() if dest else DATA_ROOT / cifar_folder_name(size)
    marker = dest / "dataset.json"
    if marker.is_file():
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise DataUnavailableError(
            f"{dest} exists but is not a finished CIFAR subset (no dataset.json); "
            "it was left untouched: move it away or pass another dest"
        )
    (x_train, y_train), (x_test, y_test), names = load_cifar100(
        archive=archive, url=url, sha256=sha256, download_dir=download_dir
    )
    _check_label_names(names)
    with files.staging_dir(dest, "building") as staging:
        counts = _write_cifar_photos(staging, size, ((x_train, y_train), (x_test, y_test)))
        _write_cifar_notes(staging, size, counts)
        try:
            if dest.exists():
                dest.rmdir()  # an empty folder (checked above)
            os.rename(staging, dest)
        except OSError:
            if not marker.is_file():  # not built meanwhile by another process
                raise

    return dest


def _write_cifar_photos(staging: Path, size: int, train_and_test: tuple) -> dict[str, dict[str, int]]:
    """CIFAR's train set as ``train/<class>/``, its test set as ``val/<class>/``, upscaled; ``{class: {split: n}}``."""
    counts: dict[str, dict[str, int]] = {}
    (x_train, y_train), (x_test, y_test) = train_and_test
    for split, source, x, y in (("train", "train", x_train, y_train), ("val", "test", x_test, y_test)):
        for name, label in CIFAR100_CLASSES.items():
            folder = staging / split / name
            folder.mkdir(parents=True)
            index = np.flatnonzero(np.asarray(y).reshape(-1) == label)
            for i in index:
                image = Image.fromarray(np.asarray(x[i], np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
                image.save(folder / f"cifar100_{source}_{i:05d}.jpg", quality=95)
            counts.setdefault(name, {})[split] = int(len(index))
    return counts


def _write_cifar_notes(staging: Path, size: int, counts: dict[str, dict[str, int]]) -> None:
    """``README.txt`` (what the photos really are: 32 px, upscaled) and ``dataset.json`` (the finished marker)."""
    (staging / "README.txt").write_text(
        f"LOW RESOLUTION: CIFAR-100 images are 32x32 pixels; these were upscaled to {size}x{size}\n"
        "(bicubic), which adds no detail. Expect lower accuracy than with real photos.\n\n"
        "Classes: bear (fine label 3), lion (43), tiger (88). train/ = CIFAR-100 train set,\n"
        "val/ = CIFAR-100 test set. File names keep each image's index in the original arrays.\n\n"
        "Source: Alex Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009.\n"
        f"{CIFAR100_URL}\n"
        "Built by helpers.data.datasets.build_cifar_photos (Transfer Learning Workbook). Do not commit.\n"
    )
    (staging / "dataset.json").write_text(
        json.dumps(
            {
                "source": "CIFAR-100 (fine labels)",
                "url": CIFAR100_URL,
                "original_size": 32,
                "upscaled_to": size,
                "low_resolution": True,
                "classes": CIFAR100_CLASSES,
                "counts": counts,
            },
            indent=2,
        )
        + "\n"
    )


MIN_OPEN_IMAGES = 10
"""Fewer Open Images photos than this in a class (or than asked for), and the CIFAR fallback is used."""


def get_photos(
    data_dir: str | os.PathLike | None = None, openimages_kwargs: dict | None = None, **cifar_kwargs
) -> Path:
    """The photo folder: ``data_dir`` → ``$WORKBOOK_DATA`` → Open Images (fetched once) → the CIFAR-100 subset.

    ``openimages_kwargs`` go to :func:`helpers.data.openimages.fetch_open_images` (``dest``,
    ``per_class``, ``seed``, ``base_url``); ``cifar_kwargs`` to :func:`build_cifar_photos`
    (``size``, ``archive``, ``url``, ``dest``).
    """
    for value, where in ((data_dir, "the folder you passed"), (os.environ.get(settings.DATA_ENV), "$WORKBOOK_DATA")):
        if value:
            folder = Path(value).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{where} ({folder}) is not a folder: check the path "
                    "(expected DIR/<class>/*.jpg or DIR/{train,val}/<class>/*.jpg)"
                )
            return folder
    kwargs = {"dest": DATA_ROOT / openimages.FOLDER_NAME, **(openimages_kwargs or {})}
    try:
        report = openimages.fetch_open_images(**kwargs)
    except openimages.OpenImagesUnavailable as exc:
        problem = f"Open Images could not be read ({exc})"
    else:
        if report.downloaded or report.changed or not report.complete:
            print(report.line(), flush=True)
        enough = min(MIN_OPEN_IMAGES, kwargs.get("per_class", MIN_OPEN_IMAGES))
        if min(report.counts.values()) >= enough:
            return report.folder
        problem = f"too few Open Images photos ({report.line()})"
    print(
        f"warning: {problem}: using the LOW-RESOLUTION fallback, CIFAR-100's lion/tiger/bear (32 px, upscaled); "
        "for real photos pass --data DIR (DATA_DIR in a notebook) or set WORKBOOK_DATA to a photo folder, "
        "or run again with internet",
        file=sys.stderr,
        flush=True,
    )
    return build_cifar_photos(**cifar_kwargs)
