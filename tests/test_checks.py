"""The data report: every kind of bad photo, built here, is named with its reason; training goes on.

Each test writes one bad file into a small, otherwise healthy photo folder (``tiny_photos``),
then checks three things: the report's reason, that ``load_folder`` returns every good photo
(and the bad one only when it can be fixed), and that the pixels of what it returns load.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.data import checks
from helpers.data.folders import check_data, load_folder, load_image, load_images
from helpers.tools.cli import main as cli_main

N_GOOD_TRAIN = 8 * 3  # tiny_photos: 8 train + 4 val per class, 3 classes
N_GOOD_VAL = 4 * 3


def structured_photo(seed: int, size: int = 96) -> Image.Image:
    """A photo-like RGB picture (random blocks on a gradient): distinct per seed, with real structure."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 128)], -1).astype(np.uint8)
    for _ in range(6):
        x0, y0 = rng.integers(0, size - 20, 2)
        w, h = rng.integers(10, size // 2, 2)
        pixels[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 255, 3)
    return Image.fromarray(pixels)


def noisy_jpeg_bytes(size: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- one builder per bad case: (build(folder) -> path, expected status, words in the reason) ---------


def truncated_jpeg(folder: Path) -> Path:
    data = noisy_jpeg_bytes()
    return write(folder / "truncated.jpg", data[: len(data) // 2])


def corrupt_jpeg(folder: Path) -> Path:
    data = bytearray(noisy_jpeg_bytes())
    data[len(data) // 2 : len(data) // 2 + 2000] = np.random.default_rng(1).bytes(2000)
    return write(folder / "corrupt.jpg", bytes(data))


def html_as_jpeg(folder: Path) -> Path:
    return write(folder / "download.jpg", b"<!DOCTYPE html><html><body>403 Forbidden</body></html>")


def zero_bytes(folder: Path) -> Path:
    return write(folder / "empty.jpg", b"")


def png_with_alpha(folder: Path) -> Path:
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red …
    image.paste((0, 0, 255, 255), (0, 0, 64, 32))  # … under an opaque blue top half
    path = folder / "alpha.png"
    image.save(path)
    return path


def grayscale(folder: Path) -> Path:
    path = folder / "gray.jpg"
    Image.new("L", (64, 64), 90).save(path)
    return path


def palette(folder: Path) -> Path:
    path = folder / "palette.png"
    Image.new("RGB", (64, 64), (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    return path


def cmyk_jpeg(folder: Path) -> Path:
    path = folder / "cmyk.jpg"
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(path, quality=95)  # pure red in print colours
    return path


def png_16_bit(folder: Path) -> Path:
    path = folder / "deep.png"
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(path)
    return path


def animated_gif(folder: Path) -> Path:
    path = folder / "animated.gif"
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def exif_rotated(folder: Path) -> Path:
    image = Image.new("RGB", (96, 48), (255, 0, 0))  # stored landscape: red left, blue right
    image.paste((0, 0, 255), (48, 0, 96, 48))
    exif = Image.Exif()
    exif[checks.EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to display"
    path = folder / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    return path


def tiny(folder: Path) -> Path:
    path = folder / "thumbnail.jpg"
    Image.new("RGB", (16, 12), (10, 20, 30)).save(path)
    return path


def huge(folder: Path) -> Path:
    path = folder / "panorama.png"
    Image.new("1", (12000, 12000)).save(path)  # 144 megapixels, 17 kB: above Pillow's limit
    return path


def bomb(folder: Path) -> Path:
    path = folder / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 megapixels: Pillow itself refuses it
    return path


def heic(folder: Path) -> Path:
    return write(folder / "IMG_0001.HEIC", b"\x00\x00\x00\x18ftypheic" + bytes(64))


CASES = {
    "truncated JPEG": (truncated_jpeg, "skipped", "truncated"),
    "corrupt JPEG": (corrupt_jpeg, "skipped", "corrupt"),
    "HTML saved as .jpg": (html_as_jpeg, "skipped", "HTML"),
    "zero-byte file": (zero_bytes, "skipped", "empty file (0 bytes)"),
    "PNG with alpha": (png_with_alpha, "fixed", "transparency"),
    "grayscale": (grayscale, "fixed", "grayscale"),
    "palette": (palette, "fixed", "palette"),
    "CMYK JPEG": (cmyk_jpeg, "fixed", "CMYK"),
    "16-bit PNG": (png_16_bit, "fixed", "16-bit"),
    "animated GIF": (animated_gif, "fixed", "3 frames"),
    "EXIF-rotated": (exif_rotated, "fixed", "EXIF orientation 6"),
    "tiny": (tiny, "skipped", "too small: 16×12"),
    "huge": (huge, "skipped", "decompression-bomb guard"),
    "decompression bomb": (bomb, "skipped", "decompression bomb"),
    "HEIC": (heic, "skipped", "HEIC"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_photo_is_reported_and_training_data_loads_the_rest(tiny_photos: Path, case: str):
    build, status, words = CASES[case]
    bad = build(tiny_photos / "train" / "lion")

    report = check_data(tiny_photos)
    entry = next(f for f in report.files if f.path == bad)
    assert entry.status == status, entry.reasons
    assert any(words in reason for reason in entry.reasons), entry.reasons
    assert words in report.format()  # the printed report says why

    folder = load_folder(tiny_photos)
    expected_train = N_GOOD_TRAIN + (status == "fixed")
    assert len(folder.train) == expected_train and len(folder.val) == N_GOOD_VAL
    assert (bad in folder.train.paths) == (status == "fixed")
    pixels = load_images(folder.train.paths, 32)  # what training decodes
    assert pixels.shape == (expected_train, 32, 32, 3) and pixels.dtype == np.uint8


def test_fixes_are_applied_when_loading(tmp_path: Path):
    """What "fixed" promises, pixel by pixel."""
    alpha = load_image(png_with_alpha(tmp_path), 64)
    assert tuple(alpha[5, 5]) == (0, 0, 255) and tuple(alpha[60, 5]) == (255, 255, 255)  # onto white
    gray = load_image(grayscale(tmp_path), 32)
    assert gray.shape == (32, 32, 3) and (gray[..., 0] == gray[..., 2]).all()
    assert np.allclose(load_image(palette(tmp_path), 32)[0, 0], (0, 200, 0), atol=3)
    assert np.allclose(load_image(cmyk_jpeg(tmp_path), 32)[16, 16], (255, 0, 0), atol=6)
    assert np.allclose(load_image(png_16_bit(tmp_path), 32)[0, 0], round(40000 / 65535 * 255), atol=1)
    assert tuple(load_image(animated_gif(tmp_path), 32)[16, 16]) == (255, 0, 0)  # first frame
    upright = load_image(exif_rotated(tmp_path), 48)
    # turned 90° clockwise, the red left half becomes the top half (crop keeps the middle)
    assert upright[2, 24, 0] > 200 and upright[2, 24, 2] < 60
    assert upright[45, 24, 2] > 200 and upright[45, 24, 0] < 60
    assert checks.check_image(exif_rotated(tmp_path)).size == (48, 96)  # upright width × height


def test_hidden_files_and_os_junk_are_skipped_with_their_reason(tiny_photos: Path):
    lion = tiny_photos / "train" / "lion"
    junk = {
        ".DS_Store": "macOS Finder",
        "Thumbs.db": "Windows thumbnail",
        "desktop.ini": "Windows folder",
        "._lion_0.jpg": "resource fork",
        ".secret.jpg": "hidden file",
        "notes.txt": "not an image file type",
    }
    for name in junk:
        write(lion / name, b"\x00\x05\x16\x07junk")
    write(lion / "__MACOSX" / "._lion_1.jpg", b"junk")

    report = check_data(tiny_photos)
    for name, words in junk.items():
        entry = next(f for f in report.files if f.path.name == name)
        assert entry.status == "skipped" and words in entry.reasons[0], (name, entry.reasons)
    assert any(p.name == "__MACOSX" and "macOS" in why for p, why in report.ignored)
    folder = load_folder(tiny_photos)
    assert len(folder.train) == N_GOOD_TRAIN
    assert not any(p.name.startswith(".") or "__MACOSX" in p.parts for p in folder.train.paths)


def test_non_ascii_and_undecodable_file_names_load_and_print(tiny_photos: Path):
    lion = tiny_photos / "train" / "lion"
    structured_photo(1).save(lion / "león_ñandú_獅子.jpg")
    raw_name = os.fsencode(lion) + b"/lion_\xff\xfe.jpg"  # not valid UTF-8 (Linux allows it)
    with open(raw_name, "wb") as f:
        structured_photo(2).save(f, "JPEG")
    with open(os.fsencode(lion) + b"/broken_\xff.jpg", "wb"):  # an empty file with such a name
        pass

    text = check_data(tiny_photos).format()
    assert "train/lion/broken_\\udcff.jpg: empty file" in text  # listed, escaped, printable
    text.encode("utf-8")
    folder = load_folder(tiny_photos)
    names = {p.name for p in folder.train.paths}
    assert "león_ñandú_獅子.jpg" in names and len(folder.train) == N_GOOD_TRAIN + 2
    assert load_images(folder.train.paths, 32).shape[0] == N_GOOD_TRAIN + 2


def _with_a_latin1_name(root: Path, where: str) -> Path:
    """``root``/{bear,lion,tiger} (under ``where``/ too, if given) with 4 photos each, and ``lion/caf\xe9.jpg``."""
    for split in ("train", "val") if where else ("",):
        for name in ("bear", "lion", "tiger"):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                structured_photo(i + 10 * len(name) + len(split)).save(root / split / name / f"{i}.jpg")
    with open(os.fsencode(root / where / "lion") + b"/caf\xe9.jpg", "wb") as f:  # Latin-1, from an old zip
        structured_photo(99).save(f, "JPEG")
    return root


def test_a_file_name_that_is_not_utf8_is_split_and_loaded(tmp_path: Path):
    """Splits hash file names (the flat layout's val, the val/ photos that become test): a name that is not
    valid UTF-8 (Linux allows any bytes) hashes as its bytes."""
    from helpers.data import photos

    def odd(paths):
        return [p for p in paths if os.fsencode(p).endswith(b"caf\xe9.jpg")]

    flat = _with_a_latin1_name(tmp_path / "flat", "")
    report = check_data(flat)
    assert report.ok and report.class_names == ["bear", "lion", "tiger"], report.errors
    folder = load_folder(flat)
    paths = folder.train.paths + folder.val.paths
    assert len(odd(paths)) == 1 and len(paths) == 13 and load_images(paths, 32).shape[0] == 13
    assert load_folder(flat).val.paths == folder.val.paths  # the same split every time
    split = _with_a_latin1_name(tmp_path / "split", "val")  # in val/: ranked for val or test
    data = photos.load(split, 32)
    assert len(odd(data.val_paths + data.test_paths)) == 1 and len(data.y_val) + len(data.y_test) == 13


def test_empty_class_folder_is_dropped_with_a_warning(tiny_photos: Path):
    (tiny_photos / "train" / "zebra").mkdir()
    (tiny_photos / "val" / "zebra").mkdir()
    truncated_jpeg(tiny_photos / "train" / "okapi")  # a class whose only photo is broken

    report = check_data(tiny_photos)
    assert report.class_names == ["bear", "lion", "tiger"] and report.ok
    assert any("'zebra'" in w and "dropped" in w for w in report.warnings)
    assert any("'okapi'" in w and "dropped" in w for w in report.warnings)
    assert load_folder(tiny_photos).class_names == ["bear", "lion", "tiger"]


def test_a_single_class_is_a_clear_error(tmp_path: Path, capsys):
    (tmp_path / "lion").mkdir()
    (tmp_path / "tiger").mkdir()  # present but empty
    for i in range(3):
        structured_photo(i).save(tmp_path / "lion" / f"{i}.jpg")

    report = check_data(tmp_path)
    assert not report.ok and "needs at least two" in report.errors[0] and "'lion'" in report.errors[0]
    with pytest.raises(ValueError, match="at least two"):
        load_folder(tmp_path)
    assert cli_main(["check-data", str(tmp_path)]) == 1
    assert "needs at least two" in capsys.readouterr().out


def test_classes_that_differ_between_train_and_val_are_warned(tiny_photos: Path):
    shutil.rmtree(tiny_photos / "val" / "tiger")
    (tiny_photos / "val" / "zebra").mkdir()
    structured_photo(3).save(tiny_photos / "val" / "zebra" / "z.jpg")

    report = check_data(tiny_photos)
    assert any("val/ has classes that train/ has not: zebra" in w for w in report.warnings)
    assert any("val/ has no folder for: tiger" in w for w in report.warnings)
    folder = load_folder(tiny_photos)
    assert folder.class_names == ["bear", "lion", "tiger"]
    assert len(folder.val) == 8 and not any("zebra" in p.parts for p in folder.val.paths)


def test_exact_and_near_duplicates_across_train_and_val_warn_of_leakage(tiny_photos: Path):
    original = tiny_photos / "train" / "lion" / "structured.png"
    structured_photo(5).save(original)
    shutil.copy(original, tiny_photos / "val" / "lion" / "copy.png")  # exact copy
    similar = structured_photo(6)
    similar.save(tiny_photos / "train" / "bear" / "bear_big.jpg", quality=95)
    similar.resize((80, 80)).save(tiny_photos / "val" / "bear" / "bear_small.jpg", quality=60)  # near copy

    report = check_data(tiny_photos)
    pairs = {(d.first.path.name, d.second.path.name): d.exact for d in report.duplicates}
    assert pairs == {("structured.png", "copy.png"): True, ("bear_big.jpg", "bear_small.jpg"): False}
    assert any("leakage" in w and "1 exact" in w and "1 near" in w for w in report.warnings)
    assert "≈" in report.format() and "==" in report.format()
    assert len(load_folder(tiny_photos).train) == N_GOOD_TRAIN + 2  # a warning, not a skip


def test_distinct_photos_are_not_called_duplicates(tiny_photos: Path):
    for i in range(10):
        structured_photo(100 + i).save(tiny_photos / "train" / "lion" / f"s{i}.jpg")
        structured_photo(200 + i).save(tiny_photos / "val" / "lion" / f"s{i}.jpg")
    png_with_alpha(tiny_photos / "train" / "tiger")  # simple pictures with equally flat structure …
    palette(tiny_photos / "val" / "tiger")  # … but different colours
    assert check_data(tiny_photos).duplicates == []


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    return {
        os.fsdecode(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_user_files_are_never_modified_moved_or_deleted(tiny_photos: Path, capsys):
    lion = tiny_photos / "train" / "lion"
    for build, _, _ in CASES.values():
        build(lion)
    write(lion / ".DS_Store", b"junk")
    before = snapshot(tiny_photos)

    check_data(tiny_photos)
    folder = load_folder(tiny_photos, per_class=3)
    load_images(folder.train.paths + folder.val.paths, 32)
    assert cli_main(["check-data", str(tiny_photos)]) == 0
    assert snapshot(tiny_photos) == before  # same files, same bytes, same times


def test_check_data_command_prints_counts_fixes_and_skips(tiny_photos: Path, tmp_path: Path, capsys):
    cmyk_jpeg(tiny_photos / "train" / "tiger")
    zero_bytes(tiny_photos / "val" / "bear")
    out_json = tmp_path / "report.json"
    assert cli_main(["check-data", str(tiny_photos), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "valid photos: 37 in 3 classes (bear, lion, tiger)" in out
    assert "train/tiger/cmyk.jpg: CMYK" in out and "val/bear/empty.jpg: empty file" in out
    import json

    saved = json.loads(out_json.read_text())
    assert saved["n_valid"] == 37 and saved["counts"]["tiger"] == {"train": 9, "val": 4}


def test_skipped_files_would_break_tensorflow_and_what_passes_decodes(tiny_photos: Path):
    """The files the report skips are the ones ``tf.io.decode_image`` (Keras' loader) chokes on."""
    tf = pytest.importorskip("tensorflow")
    lion = tiny_photos / "train" / "lion"
    bad = [truncated_jpeg(lion), corrupt_jpeg(lion), html_as_jpeg(lion), zero_bytes(lion)]
    good = [cmyk_jpeg(lion), png_16_bit(lion), animated_gif(lion), grayscale(lion), palette(lion)]
    for path in bad:
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
    folder = load_folder(tiny_photos)
    assert set(good) <= set(folder.train.paths) and not set(bad) & set(folder.train.paths)
    for path in folder.train.paths + folder.val.paths:
        assert tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False).shape[-1] == 3


def test_shared_photos_are_900_valid_in_3_classes(shared_photos: Path):
    report = check_data(shared_photos)
    assert report.ok and report.class_names == ["bear", "lion", "tiger"]
    assert len(report.valid) == 900 and not report.skipped and not report.duplicates


@pytest.mark.slow
def test_training_runs_on_a_folder_full_of_bad_files(tiny_photos: Path, tmp_path: Path):
    """Every case at once, then the real ``train`` recipe (tiny random-weight backbone): it trains on the rest."""
    from helpers.run.train import RunConfig, train_classifier

    lion = tiny_photos / "train" / "lion"
    fixed = [build(lion) for build, status, _ in CASES.values() if status == "fixed"]
    for build, status, _ in CASES.values():
        if status == "skipped":
            build(lion)
    write(lion / ".DS_Store", b"junk")
    (tiny_photos / "train" / "zebra").mkdir()
    metrics = train_classifier(
        RunConfig(
            tiny_photos,
            backbone="mobilenet_v2_0.35",
            weights=None,
            image_size=32,
            epochs=1,
            cache_dir=tmp_path / "cache",
        ),
        tmp_path / "run",
    )
    assert metrics["class_names"] == ["bear", "lion", "tiger"]
    # the validation photos are split in two: half choose the epoch, half are the test photos
    assert metrics["n_train"] == N_GOOD_TRAIN + len(fixed) and metrics["n_val"] + metrics["n_test"] == N_GOOD_VAL
    assert (tmp_path / "run" / "model.keras").is_file()


def test_check_data_command_reads_workbook_data_when_no_folder_is_given(tiny_photos: Path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_DATA", str(tiny_photos))
    assert cli_main(["check-data"]) == 0
    assert "valid photos: 36 in 3 classes" in capsys.readouterr().out
    # (without it, the CLI falls back to CIFAR-100 like the notebooks: tests/test_train.py covers that)


def test_the_same_picture_in_two_classes_is_a_label_conflict(tiny_photos: Path):
    structured_photo(9).save(tiny_photos / "train" / "lion" / "cat.png")
    structured_photo(9).save(tiny_photos / "train" / "tiger" / "cat.png")
    report = check_data(tiny_photos)
    assert [(d.leak, d.conflicting_labels, d.exact) for d in report.duplicates] == [(False, True, True)]
    assert any("conflicting labels: 1 pictures are filed under two classes" in w for w in report.warnings)
    assert not any("leakage" in w for w in report.warnings)
