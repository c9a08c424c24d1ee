"""Atomic writes: a result file appears whole or not at all."""

from __future__ import annotations

import json

import pytest

from helpers import files


def test_write_json_replaces_the_file_whole(tmp_path):
    target = tmp_path / "out" / "metrics.json"
    files.write_json(target, {"val_accuracy": 0.5})
    files.write_json(target, {"val_accuracy": 0.75})
    assert json.loads(target.read_text()) == {"val_accuracy": 0.75}
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temp files left


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"kept": true}')
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half a fi")
            raise RuntimeError("crash while writing")
    assert target.read_text() == '{"kept": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_the_temporary_file_keeps_the_suffix(tmp_path):
    with files.atomic_path(tmp_path / "model.keras") as tmp:
        assert tmp.name.endswith(".keras") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")


def test_a_staging_folder_never_lingers(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(RuntimeError):
        with files.staging_dir(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("crash while building")
    assert list(tmp_path.iterdir()) == []  # neither the target nor the half-built folder
    with files.staging_dir(target) as staging:
        (staging / "whole.txt").write_text("whole")
        staging.rename(target)
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert (target / "whole.txt").read_text() == "whole"


def test_written_files_follow_the_umask_not_0600(tmp_path):
    """metrics.json used to be created 0600 (mkstemp's mode); a result file gets the user's normal permissions."""
    import os

    old = os.umask(0o022)
    try:
        assert files.write_json(tmp_path / "a.json", {}).stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert files.write_json(tmp_path / "b.json", {}).stat().st_mode & 0o777 == 0o600
        os.umask(0o002)
        assert files.write_json(tmp_path / "c.json", {}).stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_an_output_folder_is_checked_before_any_work(tmp_path):
    a_file = tmp_path / "taken"
    a_file.write_text("user data")
    with pytest.raises(OSError, match="is a file, not a folder"):
        files.check_output_dir(a_file)
    with pytest.raises(OSError, match="free but about"):
        files.check_output_dir(tmp_path / "out", need_bytes=1 << 60)
    assert files.check_output_dir(tmp_path / "new" / "run", need_bytes=1000).is_dir()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["new", "run", "taken"]  # the probe is gone
    assert a_file.read_text() == "user data"
