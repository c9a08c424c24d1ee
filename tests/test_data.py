"""Photo folders: both layouts, seeded stable stratified splits, the per-class knob, loading pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, make_photo

from helpers.data.folders import Split, load_folder, load_image, load_images, sample_per_class
from helpers.data.survey import SkipKind, skip_folder, survey_folder


def flat_photos(root: Path, n: dict[str, int]) -> Path:
    """``root/<class>/<class>_<i>.jpg``: the layout without a split of its own."""
    for c, (name, count) in enumerate(n.items()):
        for i in range(count):
            make_photo(root / name / f"{name}_{i}.jpg", COLOURS.get(name, (90, 90, 90)), seed=100 * c + i)
    return root


def test_existing_train_val_split_is_used(tiny_photos: Path):
    folder = load_folder(tiny_photos)
    assert folder.class_names == ["bear", "lion", "tiger"]
    assert folder.train.counts(3) == [8, 8, 8] and folder.val.counts(3) == [4, 4, 4]
    assert folder.test is None and folder.report.layout == "DIR/{train,val}/<class>/"
    assert all(p.parent.name == folder.class_names[label] for p, label in zip(folder.train.paths, folder.train.labels))


def test_validation_and_testing_folder_names_are_understood(tiny_photos: Path):
    (tiny_photos / "val").rename(tiny_photos / "validation")
    make_photo(tiny_photos / "Test" / "lion" / "t.jpg", COLOURS["lion"])
    folder = load_folder(tiny_photos)
    assert len(folder.val) == 12 and len(folder.test) == 1


def test_flat_layout_gets_a_seeded_stratified_split(tmp_path: Path):
    root = flat_photos(tmp_path / "photos", {"bear": 30, "lion": 30, "tiger": 3})
    folder = load_folder(root, val_fraction=0.2, seed=0)
    assert folder.report.layout == "DIR/<class>/"
    assert len(folder.train) + len(folder.val) == 63
    assert not set(folder.train.paths) & set(folder.val.paths)
    assert all(1 <= n <= 12 for n in folder.val.counts(3))  # every class, even the small one, has val
    again = load_folder(root, val_fraction=0.2, seed=0)
    assert again.val.paths == folder.val.paths  # same seed, same split
    assert load_folder(root, val_fraction=0.2, seed=1).val.paths != folder.val.paths


def test_adding_photos_to_one_class_does_not_reshuffle_the_others(tmp_path: Path):
    root = flat_photos(tmp_path / "photos", {"bear": 20, "lion": 20, "tiger": 20})
    before = load_folder(root, seed=3)
    for i in range(20, 40):
        make_photo(root / "lion" / f"lion_{i}.jpg", COLOURS["lion"], seed=900 + i)
    after = load_folder(root, seed=3)

    def of(split: Split, label: int) -> list[Path]:
        return [p for p, y in zip(split.paths, split.labels) if y == label]

    for label in (0, 2):  # bear, tiger untouched
        assert of(after.val, label) == of(before.val, label) and of(after.train, label) == of(before.train, label)
    assert set(of(before.val, 1)) <= set(of(after.val, 1))  # lion's old val photos stay in val


def test_per_class_picks_the_same_n_for_the_same_seed(tiny_photos: Path):
    a = load_folder(tiny_photos, per_class=3, seed=7)
    b = load_folder(tiny_photos, per_class=3, seed=7)
    c = load_folder(tiny_photos, per_class=3, seed=8)
    assert a.train.counts(3) == [3, 3, 3] and a.train.paths == b.train.paths
    assert a.train.paths != c.train.paths
    assert len(a.val) == 12  # validation keeps everything
    # a bigger N contains the smaller sample: adding photos only ever adds
    assert set(a.train.paths) <= set(load_folder(tiny_photos, per_class=5, seed=7).train.paths)


def test_per_class_sample_is_stable_when_photos_are_added(tiny_photos: Path):
    before = load_folder(tiny_photos, per_class=4, seed=0)
    for i in range(8, 16):
        make_photo(tiny_photos / "train" / "bear" / f"bear_{i}.jpg", COLOURS["bear"], seed=700 + i)
    after = load_folder(tiny_photos, per_class=4, seed=0)
    lions_tigers = [p for p in before.train.paths if p.parent.name != "bear"]
    assert lions_tigers == [p for p in after.train.paths if p.parent.name != "bear"]


def test_sample_per_class_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        sample_per_class(Split([Path("a.jpg")], [0]), 0)


def test_photos_in_nested_folders_are_found_like_keras_does(tiny_photos: Path):
    make_photo(tiny_photos / "train" / "lion" / "safari_2024" / "l.jpg", COLOURS["lion"])
    assert len(load_folder(tiny_photos).train) == 25


def test_missing_folder_and_stray_layouts_give_clear_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="WORKBOOK_DATA"):
        load_folder(tmp_path / "nowhere")
    make_photo(tmp_path / "val" / "lion" / "a.jpg", COLOURS["lion"])
    with pytest.raises(ValueError, match="no train/"):
        load_folder(tmp_path)


def test_check_false_reads_names_only_and_is_still_safe_from_junk(tiny_photos: Path):
    (tiny_photos / "train" / "lion" / ".DS_Store").write_bytes(b"junk")
    folder = load_folder(tiny_photos, check=False)
    assert len(folder.train) == 24 and all(f.fingerprint is None for f in folder.report.files)


def test_load_images_gives_uint8_squares(tiny_photos: Path):
    folder = load_folder(tiny_photos)
    pixels = load_images(folder.val.paths, 40)
    assert pixels.shape == (12, 40, 40, 3) and pixels.dtype == np.uint8
    assert load_images([], 40).shape == (0, 40, 40, 3)
    lion = load_image(folder.val.paths[4], 40).reshape(-1, 3).mean(0)
    assert np.allclose(lion, COLOURS["lion"], atol=25)


def test_shared_photos_load_with_the_real_split(shared_photos: Path):
    folder = load_folder(shared_photos, per_class=10, seed=0)
    assert folder.class_names == ["bear", "lion", "tiger"]
    assert folder.train.counts(3) == [10, 10, 10] and folder.val.counts(3) == [60, 60, 60]


def test_a_symlink_loop_is_reported_not_followed_forever(tiny_photos: Path):
    (tiny_photos / "train" / "lion" / "again").symlink_to(tiny_photos / "train")
    folder = load_folder(tiny_photos)
    assert any("loop" in why for _, why in folder.report.ignored)
    assert len(folder.train) >= 24


def test_one_folder_too_deep_gets_a_hint(tiny_photos: Path, tmp_path: Path):
    outer = tmp_path / "download"
    outer.mkdir()
    (tiny_photos / "train").rename(outer / "photos")
    with pytest.raises(ValueError, match="Did you mean the folder inside it"):
        load_folder(outer)


def test_own_folders_beside_train_are_reported_by_kind_not_by_wording(tiny_photos: Path):
    """A workbook folder beside train/ is said in the report whatever its wording (it once had to start 'the ')."""
    (tiny_photos / "runs").mkdir()
    (tiny_photos / "notes").mkdir()
    report = survey_folder(tiny_photos, own_folders={tiny_photos / "runs": "my run's output, not photos"})
    said = dict((p.name, why) for p, why in report.ignored)
    assert said["runs"] == "my run's output, not photos"
    assert said["notes"].startswith("folder beside train/ that is not a split")
    assert skip_folder("runs", tiny_photos / "runs", {(tiny_photos / "runs").resolve(): "x"}).kind is SkipKind.WORKBOOK
    assert skip_folder(".cache").kind is SkipKind.HIDDEN and ".cache" not in said
