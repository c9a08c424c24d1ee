"""What a cache root holds: its folders, what each is for (``meta.json``), their size; clearing them."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


def human(n_bytes: float) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 KB``, ``2.0 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GB"


@dataclass
class CacheFolder:
    """One folder of a cache root: what model, cut and image size its entries are for."""

    path: Path
    meta: dict
    entries: int
    bytes: int

    def describe(self) -> str:
        m = self.meta
        what = (
            (
                f"{m.get('model', '?')} cut at {m.get('cut', '?')}, {m.get('image_size', '?')} px, "
                f"{m.get('dtype', '?')} {tuple(m.get('output_shape') or ())}"
            )
            if m
            else "no readable meta.json"
        )
        weights = f", weights {m['weights_source']}" if m.get("weights_source") else ""
        return f"{self.path.name}: {self.entries} entries, {human(self.bytes)} ({what}{weights})"


def folders(root: Path) -> list[CacheFolder]:
    """Every cache folder under ``root`` (folders with a ``meta.json``), by name."""
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "meta.json").exists()):
        try:
            meta = json.loads((folder / "meta.json").read_text())
            meta = meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            meta = {}
        entries = [p for p in folder.iterdir() if p.suffix == ".npy" and not p.name.startswith(".")]
        size = sum(_size(p) for p in folder.iterdir())
        out.append(CacheFolder(folder, meta, len(entries), size))
    return out


def describe(root: Path) -> str:
    """One line: where the cache lives and how big it is."""
    found = folders(root)
    if not found:
        return f"bottleneck cache at {root}: empty"
    return (
        f"bottleneck cache at {root}: {len(found)} folders, "
        f"{sum(f.entries for f in found)} entries, {human(sum(f.bytes for f in found))}"
    )


def clear(root: Path) -> int:
    """Delete every cache folder under ``root``; return the bytes freed.

    Only folders the cache made (they hold a ``meta.json``) are removed, and the root
    itself if that leaves it empty: a root pointed at a folder of other files is safe.
    """
    freed = 0
    for entry in folders(root):
        freed += entry.bytes
        shutil.rmtree(entry.path, ignore_errors=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return freed


def read_meta(meta_file: Path) -> dict | None:
    """A folder's ``meta.json``, or None when there is none or it is unreadable (then it is written again)."""
    if not meta_file.exists():
        return None
    try:
        stored = json.loads(meta_file.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        print(
            f"bottleneck cache: {meta_file} is unreadable ({type(exc).__name__}); writing it again",
            file=sys.stderr,
            flush=True,
        )
        return None
    return stored


def describe_source(source: str | None) -> str | None:
    """A weights file as path + size + mtime (for people reading meta.json; the key hashes values)."""
    if source is None:
        return None
    path = Path(str(source))
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()} ({stat.st_size} bytes, mtime {stat.st_mtime_ns})"
    return str(source)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
