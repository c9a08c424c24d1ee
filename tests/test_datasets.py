"""The default data: CIFAR-100's lion/tiger/bear as an upscaled, clearly LOW-RESOLUTION photo folder.

The real download cannot run here, so the tests build a tiny archive in CIFAR-100's own
format (``cifar-100-python.tar.gz`` holding the ``train``, ``test`` and ``meta`` pickles)
and feed it to the same code: from a file, and over HTTP from 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_download import Loopback

from helpers.data import datasets
from helpers.data.checks import check_image
from helpers.data.download import ChecksumError, sha256_of
from helpers.data.folders import check_data, load_folder

# CIFAR-100's fine label names in the order of its meta file (alphabetical; as published)
FINE_LABEL_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
COLOUR = {3: (120, 70, 30), 43: (220, 180, 60), 88: (40, 120, 220), 0: (0, 255, 0), 50: (255, 0, 255)}


def cifar_batch(labels: list[int]) -> bytes:
    """One CIFAR pickle: rows of 3072 bytes (R plane, G plane, B plane), with fine and coarse labels."""
    images = np.stack([np.broadcast_to(np.array(COLOUR[y], np.uint8)[:, None, None], (3, 32, 32)) for y in labels])
    batch = {
        b"data": images.reshape(len(labels), 3072),
        b"fine_labels": labels,
        b"coarse_labels": [0] * len(labels),
        b"filenames": [b"x.png"] * len(labels),
        b"batch_label": b"b",
    }
    return pickle.dumps(batch, protocol=4)


def make_cifar_archive(path: Path, train: list[int], test: list[int], meta: bytes | None = None) -> Path:
    members = {
        "cifar-100-python/train": cifar_batch(train),
        "cifar-100-python/test": cifar_batch(test),
        "cifar-100-python/meta": meta
        or pickle.dumps(
            {b"fine_label_names": [n.encode() for n in FINE_LABEL_NAMES], b"coarse_label_names": [b"c"] * 20},
            protocol=4,
        ),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


TRAIN = [3, 43, 88, 0, 50] * 4 + [3]  # 5 bears, 4 lions, 4 tigers, and 8 of other classes
TEST = [88, 3, 43, 0, 88]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return make_cifar_archive(tmp_path / "cifar-100-python.tar.gz", TRAIN, TEST)


def test_class_indices_follow_the_meta_label_order():
    assert len(FINE_LABEL_NAMES) == 100 and FINE_LABEL_NAMES == sorted(FINE_LABEL_NAMES)
    for name, index in datasets.CIFAR100_CLASSES.items():
        assert FINE_LABEL_NAMES[index] == name


def test_archive_reads_like_keras_load_data(archive: Path):
    (x_train, y_train), (x_test, y_test), names = datasets.read_cifar100_archive(archive)
    assert x_train.shape == (len(TRAIN), 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (len(TRAIN), 1) and y_test.reshape(-1).tolist() == TEST
    assert names == FINE_LABEL_NAMES
    assert tuple(x_train[1, 5, 5]) == COLOUR[43]  # channels-last, like Keras


def test_archive_format_is_the_one_keras_parses(archive: Path, tmp_path: Path):
    """Keras' own CIFAR batch reader, on the same member, gives the same pixels and labels."""
    load_batch = pytest.importorskip("keras.src.datasets.cifar").load_batch
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    data, labels = load_batch(str(tmp_path / "x" / "cifar-100-python" / "train"), label_key="fine_labels")
    (x_train, y_train), _, _ = datasets.read_cifar100_archive(archive)
    assert np.array_equal(data.transpose(0, 2, 3, 1), x_train) and list(labels) == y_train.reshape(-1).tolist()


def test_subset_is_selected_upscaled_and_labelled_low_resolution(archive: Path, tmp_path: Path):
    dest = datasets.build_cifar_photos(
        tmp_path / "data" / datasets.cifar_folder_name(64), size=64, archive=archive, sha256=sha256_of(archive)
    )
    assert "32px-upscaled-to-64px" in dest.name
    folder = load_folder(dest)
    assert folder.class_names == ["bear", "lion", "tiger"]
    assert folder.train.counts(3) == [5, 4, 4] and folder.val.counts(3) == [1, 1, 2]
    for path, label in zip(folder.train.paths + folder.val.paths, folder.train.labels + folder.val.labels):
        check = check_image(path)
        assert check.size == (64, 64) and check.status == "ok"
        pixels = np.asarray(Image.open(path).convert("RGB"))
        wanted = COLOUR[datasets.CIFAR100_CLASSES[folder.class_names[label]]]
        assert np.allclose(pixels.reshape(-1, 3).mean(0), wanted, atol=4)  # the right class's pixels
    assert "LOW RESOLUTION" in (dest / "README.txt").read_text()
    info = json.loads((dest / "dataset.json").read_text())
    assert info["low_resolution"] and info["original_size"] == 32 and info["upscaled_to"] == 64
    assert info["counts"]["tiger"] == {"train": 4, "val": 2}
    assert check_data(dest).ok and not [p for p in dest.parent.iterdir() if p.name.startswith(".")]


def test_a_finished_subset_is_reused_without_reading_the_archive(archive: Path, tmp_path: Path):
    dest = datasets.build_cifar_photos(tmp_path / "cifar", size=40, archive=archive, sha256=sha256_of(archive))
    stamp = (dest / "dataset.json").stat().st_mtime_ns
    again = datasets.build_cifar_photos(tmp_path / "cifar", size=40, archive=tmp_path / "gone.tar.gz")
    assert again == dest and (dest / "dataset.json").stat().st_mtime_ns == stamp


def test_a_foreign_folder_is_never_overwritten(archive: Path, tmp_path: Path):
    mine = tmp_path / "cifar" / "my_notes.txt"
    mine.parent.mkdir()
    mine.write_text("mine")
    with pytest.raises(datasets.DataUnavailableError, match="left untouched"):
        datasets.build_cifar_photos(tmp_path / "cifar", archive=archive, sha256=sha256_of(archive))
    assert mine.read_text() == "mine"


def test_an_archive_that_is_not_the_published_one_is_refused(archive: Path, tmp_path: Path):
    with pytest.raises(ChecksumError, match="download it again"):
        datasets.build_cifar_photos(tmp_path / "cifar", archive=archive)  # default: the real sha256
    assert not (tmp_path / "cifar").exists()


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    archive = make_cifar_archive(tmp_path / "evil.tar.gz", TRAIN, TEST, meta=pickle.dumps({b"x": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets.read_cifar100_archive(archive)


def test_subset_from_a_mirror_url_over_loopback(archive: Path, tmp_path: Path):
    server = Loopback()
    try:
        server.files["cifar-100-python.tar.gz"] = archive.read_bytes()
        dest = datasets.build_cifar_photos(
            tmp_path / "cifar",
            size=48,
            url=server.url("cifar-100-python.tar.gz"),
            sha256=sha256_of(archive),
            download_dir=tmp_path / "downloads",
        )
    finally:
        server.close()
    assert load_folder(dest).train.counts(3) == [5, 4, 4]
    assert (tmp_path / "downloads" / "cifar-100-python.tar.gz").is_file()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_keras_download_gives_one_clear_error(tmp_path: Path, monkeypatch):
    """The real ``keras.datasets.cifar100.load_data`` call, with its traffic sent to a closed local port."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(datasets.DataUnavailableError) as error:
        datasets.load_cifar100()
    message = str(error.value)
    assert "WORKBOOK_DATA" in message and "archive=PATH" in message and datasets.CIFAR100_SHA256 in message


def test_get_photos_prefers_your_folder_then_the_environment(archive: Path, tmp_path: Path, monkeypatch):
    mine, env = tmp_path / "mine", tmp_path / "env"
    mine.mkdir()
    env.mkdir()
    monkeypatch.setenv("WORKBOOK_DATA", str(env))
    assert datasets.get_photos(mine) == mine
    assert datasets.get_photos() == env
    with pytest.raises(FileNotFoundError, match="not a folder"):
        datasets.get_photos(tmp_path / "typo")
    monkeypatch.delenv("WORKBOOK_DATA")
    monkeypatch.setenv("WORKBOOK_OPENIMAGES_URL", f"http://127.0.0.1:{closed_port()}")  # Open Images unreachable
    built = datasets.get_photos(dest=tmp_path / "cifar", size=32, archive=archive, sha256=sha256_of(archive))
    assert built == tmp_path / "cifar" and (built / "dataset.json").is_file()


def test_default_location_is_the_git_ignored_data_folder():
    assert datasets.DATA_ROOT == Path(datasets.__file__).resolve().parents[2] / "data"  # helpers/data/datasets.py
    gitignore = (datasets.DATA_ROOT.parent / ".gitignore").read_text().split()
    assert "/data/*/" in gitignore
