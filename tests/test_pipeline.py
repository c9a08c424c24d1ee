"""tf.data input pipeline: parallel decode + resize + prefetch, with the same pixels as load_image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers.data import pipeline
from helpers.data.folders import load_folder, load_images


@pytest.fixture
def awkward_photos(tmp_path):
    """A wide JPEG, a tall EXIF-rotated JPEG and a transparent PNG: the cases load_image fixes."""
    rng = np.random.default_rng(1)
    wide = tmp_path / "wide.jpg"
    Image.fromarray(rng.integers(0, 255, (40, 90, 3), dtype=np.uint8)).save(wide, quality=85)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° when shown
    Image.fromarray(rng.integers(0, 255, (70, 50, 3), dtype=np.uint8)).save(rotated, exif=exif)
    png = tmp_path / "alpha.png"
    rgba = rng.integers(0, 255, (50, 50, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(png)
    return [wide, rotated, png]


def batches(ds):
    return [tuple(np.asarray(t) for t in b) if isinstance(b, tuple) else np.asarray(b) for b in ds]


def test_the_pipeline_gives_exactly_the_pixels_of_load_image(tiny_photos, awkward_photos):
    folder = load_folder(tiny_photos)
    paths = folder.train.paths + awkward_photos
    got = np.concatenate(batches(pipeline.photo_dataset(paths, 40, batch_size=5)))
    np.testing.assert_array_equal(got, load_images(paths, 40))


def test_labels_travel_with_their_photos_and_shuffling_is_seeded(tiny_photos):
    folder = load_folder(tiny_photos)
    size = 24
    ds = pipeline.photo_dataset(folder.train.paths, size, folder.train.labels, batch_size=7)
    xs, ys = zip(*batches(ds))
    assert [len(b) for b in ys] == [7, 7, 7, 3]
    np.testing.assert_array_equal(np.concatenate(ys), folder.train.labels)
    shuffled = [
        np.concatenate(
            [
                b[1]
                for b in batches(
                    pipeline.photo_dataset(folder.train.paths, size, folder.train.labels, shuffle=True, seed=3)
                )
            ]
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(shuffled[0], shuffled[1])
    assert sorted(shuffled[0]) == sorted(folder.train.labels) and list(shuffled[0]) != folder.train.labels


def test_the_tensorflow_decoder_is_close_but_not_identical(tiny_photos):
    if not pipeline.has_tensorflow():
        with pytest.raises(ValueError, match="needs TensorFlow"):
            pipeline.photo_dataset(load_folder(tiny_photos).train.paths, 40, decoder="tf")
        pytest.skip("TensorFlow is not installed: decoder='tf' says so (checked above)")
    paths = load_folder(tiny_photos).train.paths
    tf_pixels = np.concatenate(batches(pipeline.photo_dataset(paths, 40, decoder="tf")))
    pil_pixels = load_images(paths, 40)
    assert tf_pixels.shape == pil_pixels.shape and tf_pixels.dtype == np.uint8
    assert np.abs(tf_pixels.astype(int) - pil_pixels.astype(int)).mean() < 4.0


def test_a_missing_photo_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        pipeline.photo_dataset([tmp_path / "gone.jpg"], 32)
    with pytest.raises(ValueError, match="decoder"):
        pipeline.photo_dataset([], 32, decoder="opencv")


def test_from_arrays_repeats_and_reshuffles():
    x, y = np.arange(10, dtype="float32")[:, None], np.arange(10)
    ds = pipeline.from_arrays(x, y, batch_size=4, shuffle=True, seed=0, repeat=True)
    seen = np.concatenate([np.asarray(b[1]) for _, b in zip(range(6), ds)])  # 2 passes of 4 + 4 + 2
    assert len(seen) == 20
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert list(seen[:10]) != list(seen[10:]), "every pass should be reshuffled"
