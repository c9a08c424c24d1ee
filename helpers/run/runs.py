"""One output folder, one run: ``run.json`` records what a ``train`` run is, so state is never mixed.

``python -m helpers train --out DIR`` calls :func:`prepare` before any work starts. DIR
then holds either nothing of the workbook's, or the record of one run
(:meth:`helpers.run.config.RunConfig.record`) — its data (the
folder and a digest of its file listing), backbone, weights, image size, epochs, cut
(fine-tune block), seed, batch size — and its status (``running``, ``complete``,
``interrupted``, ``failed``). A new run into DIR:

* with the **same** configuration resumes it: the run starts again, and the expensive
  part, the frozen backbone's activations, comes back from the on-disk activation cache
  (``helpers.store.cache``); anything half-done in DIR from the interrupted try is cleared first;
* with a **different** configuration is refused with one line that says how to start
  fresh: ``--fresh`` (clear this folder's run) or a new ``--out``;
* with ``fresh=True`` clears the old run first.

Only the workbook's own outputs are ever deleted (the names in :data:`OWN_FILES` and
:data:`OWN_FOLDERS`, and the temporary files of their atomic writes); anything else in
DIR is left alone.

While a run works in DIR it holds :func:`lock` (an ``flock`` on ``DIR/.run.lock``, which the
operating system releases when the process ends, even by ``kill -9``): a second run into the
same DIR — resuming, or ``--fresh`` — is refused in one line naming the running process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here, runs into one folder are not guarded
    fcntl = None

from helpers import files
from helpers.data.checks import workbook_folder_reason

RUN_FILE = "run.json"
FORMAT = 1
OWN_FILES = ("model.keras", "metrics.json", "evaluation.json", "labels.txt", RUN_FILE)
"""Files a run (and ``evaluate``/``export`` beside it) writes into its output folder."""
OWN_FOLDERS = {"checkpoints": {"head", "fine_tune"}}
"""Folders a run writes, with the sub-folders they may hold (anything else there: not ours)."""
MODEL_MEGABYTES = {
    "inception_v3": 92,
    "mobilenet_v2": 10,
    "mobilenet_v2_0.35": 3,
    "mobilenet": 17,
    "mobilenet_0.25": 2,
    "resnet50": 95,
    "efficientnet_b0": 17,
    "xception": 84,
}
"""Rough size of a saved ``model.keras`` per backbone, for the free-space check before training."""
PEAK_FLOATS_PER_PIXEL = {
    "inception_v3": 16,
    "mobilenet_v2": 25,
    "mobilenet_v2_0.35": 13,
    "mobilenet": 17,
    "mobilenet_0.25": 5,
    "resnet50": 17,
    "efficientnet_b0": 25,
    "xception": 31,
}
"""Each backbone's largest layer output, in numbers per input pixel (rounded up; at 224 px, where
MobileNetV2's ``block_1_expand`` is 112×112×96 = 24.4 per pixel). tests/test_train.py measures them."""
BASE_MEMORY = 1 << 30
"""What a run needs besides the batch's activations (Python, TensorFlow, the weights): about 1 GiB."""


def batch_bytes(backbone: str, image_size: int, batch_size: int) -> int:
    """About the most memory one batch takes on its way through the frozen base, in bytes.

    The rule, kept simple: per photo and pixel, three float32 copies of the largest layer
    output (a layer's input, its output and a temporary) plus the decoded photo (uint8 and
    float32). It grows with the square of the side: MobileNetV2 at 224 px, 32 photos: 0.5 GB;
    at 5000 px: 240 GB.
    """
    return batch_size * image_size * image_size * _bytes_per_pixel(backbone)


def _bytes_per_pixel(backbone: str) -> int:
    return 3 * 4 * PEAK_FLOATS_PER_PIXEL.get(backbone, max(PEAK_FLOATS_PER_PIXEL.values())) + 3 + 3 * 4


def available_memory() -> int | None:
    """Bytes of memory this process can still use: ``MemAvailable``, capped by a cgroup limit (None: unknown)."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))  # macOS: total memory
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def image_size_problem(
    backbone: str, image_size: int, min_size: int, batch_size: int, available: int | None = None
) -> str | None:
    """Why ``backbone`` cannot run on ``image_size`` px photos here (one line), else None.

    Below ``min_size`` (the backbone's smallest input, Keras' own limit) the network cannot
    take the photo; above the size whose batch (:func:`batch_bytes`) plus :data:`BASE_MEMORY`
    fits in ``available`` memory (default: :func:`available_memory`), the process would be
    killed for memory. Asked before any work starts.
    """
    if image_size < min_size:
        return f"--image-size {image_size}: {backbone} takes photos of at least {min_size} px; pass {min_size} or more"
    available = available_memory() if available is None else available
    if available is None:
        return None
    need = batch_bytes(backbone, image_size, batch_size) + BASE_MEMORY
    if need > available:
        spare = available - BASE_MEMORY
        largest = int((spare / (batch_size * _bytes_per_pixel(backbone))) ** 0.5) if spare > 0 else 0
        return (
            f"--image-size {image_size}: a batch of {batch_size} photos through {backbone} needs about "
            f"{files.human_size(need)} of memory and {files.human_size(available)} is available; "
            + (f"pass {largest} or less (or a smaller --batch-size)" if largest >= min_size else "free some memory")
        )
    return None


class RunConflict(ValueError):
    """The output folder holds another run (or files we cannot account for); the message says what to do."""


class RunLocked(RunConflict):
    """Another process is running in the output folder right now (it holds :func:`lock`)."""


LOCK_FILE = ".run.lock"


def _holder(fd: int) -> str:
    """Who holds the lock: what it wrote into the lock file (``pid … since …``), read a few times if not yet there."""
    for _ in range(20):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
        if text:
            return text
        time.sleep(0.025)
    return "pid unknown"


@contextlib.contextmanager
def lock(out: str | os.PathLike, fresh: bool = False) -> Iterator[Path]:
    """Hold the run lock of ``out`` meanwhile, or raise :class:`RunLocked` (one line naming the running pid).

    An ``flock`` on ``out/.run.lock``: the operating system drops it when the process ends,
    however it ends, so a killed run never leaves a stale lock. The file itself is removed on
    the way out (while still locked; a waiting process that locked the removed file tries again).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    if fcntl is None:
        yield path
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            doing = "--fresh would clear a live run: " if fresh else ""
            raise RunLocked(
                f"{doing}{out} is in use by a running train ({holder}): wait for it to finish or stop it, "
                "or choose another --out"
            ) from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # we locked a file its last holder had just removed: lock the one there now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def data_digest(folder: str | os.PathLike) -> str:
    """A digest of a photo folder's listing (relative paths, sizes, modification times); reads no pixels.

    The workbook's own folders inside it (a run's ``--out``, the activation cache:
    :func:`helpers.data.checks.workbook_folder_reason`) are left out: they are not photos, and a
    run writing into ``--out DIR/runs`` must not change the digest of ``DIR``.
    """
    root = Path(folder).expanduser()
    h = hashlib.blake2b(digest_size=12)
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if workbook_folder_reason(Path(here) / d) is None)
        for name in sorted(names):
            path = Path(here) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            h.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "replace"))
    return h.hexdigest()


def describe_weights(weights: str | None) -> str | None:
    """Weights as recorded: a file by its absolute path, size and mtime; else the name (imagenet, None)."""
    if weights is None:
        return None
    path = Path(str(weights)).expanduser()
    if path.is_file():
        stat = path.stat()
        return f"{path.resolve()} ({stat.st_size} bytes, mtime {stat.st_mtime_ns})"
    return str(weights)


def estimate_bytes(backbone: str, weights: str | None) -> int:
    """About how much a run writes into its output folder (``model.keras`` dominates)."""
    path = Path(str(weights)).expanduser() if weights else None
    if path is not None and path.is_file():
        return int(path.stat().st_size * 1.2) + (1 << 20)
    return MODEL_MEGABYTES.get(backbone, 100) << 20


def read_record(out: str | os.PathLike) -> dict | None:
    """The ``run.json`` in ``out`` (None if there is none); raises :class:`RunConflict` if it is unreadable."""
    path = Path(out) / RUN_FILE
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise ValueError("no run configuration in it")
        return record
    except (OSError, ValueError) as exc:
        raise RunConflict(
            f"{path} is unreadable ({exc}): pass --fresh to replace this folder's run, or choose a new --out"
        ) from None


def own_outputs(out: str | os.PathLike) -> list[Path]:
    """The workbook's outputs present in ``out`` (and leftover temporary files of their writes)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [out / name for name in OWN_FILES if (out / name).exists()]
    found += [out / name for name in OWN_FOLDERS if (out / name).exists()]
    for name in OWN_FILES:
        stem, suffix = Path(name).stem, Path(name).suffix
        found += sorted(out.glob(f".{stem}.*{suffix}"))
    return found


def _check_ours(path: Path) -> None:
    """Refuse to delete a folder of ours that holds something we did not write."""
    allowed = OWN_FOLDERS.get(path.name)
    if allowed is None or not path.is_dir():
        return
    strangers = [p.name for p in path.iterdir() if p.name not in allowed or not p.is_dir()]
    if strangers:
        raise RunConflict(
            f"{path} holds {', '.join(sorted(strangers)[:3])}, which the workbook did not write: "
            "move them away, or choose a new --out"
        )


def _remove(paths: list[Path]) -> None:
    for path in paths:
        _check_ours(path)
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _differences(old: dict, new: dict) -> str:
    keys = [k for k in new if old.get(k) != new.get(k)] + [k for k in old if k not in new]
    shown = []
    for key in keys[:4]:
        if key == "data_digest":
            shown.append("the photos in the data folder changed")
        else:
            shown.append(f"{key} {old.get(key)!r} → {new.get(key)!r}")
    return "; ".join(shown)


def _write(out: Path, record: dict) -> None:
    files.write_json(out / RUN_FILE, record)


def prepare(out: str | os.PathLike, config: dict, fresh: bool = False) -> str:
    """Make ``out`` ready for the run ``config``; return one line saying what was done.

    Raises :class:`RunConflict` (one line: what differs and how to start fresh) when
    ``out`` holds another run's state and ``fresh`` is False.
    """
    out = Path(out)
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    present = own_outputs(out)
    attempts = 1
    if fresh and present:
        _remove(present)
        message = f"--fresh: cleared the earlier run in {out} ({', '.join(p.name for p in present)})"
    elif not present:
        message = f"new run in {out}"
    else:
        record = read_record(out)
        if record is None:
            raise RunConflict(
                f"{out} holds {', '.join(p.name for p in present)} from a run that did not record "
                "its settings (no run.json): pass --fresh to replace it, or choose a new --out"
            )
        if record["config"] != config:
            raise RunConflict(
                f"{out} holds another run ({_differences(record['config'], config)}): pass --fresh "
                "to replace it, or choose a new --out"
            )
        leftovers = [p for p in present if p.name in OWN_FOLDERS or p.name.startswith(".")]
        _remove(leftovers)  # half-done state of the earlier try: never read back
        attempts = int(record.get("attempts", 1)) + 1
        was = record.get("status", "?")
        message = (
            f"resuming the {'interrupted ' if was != 'complete' else ''}run in {out} (same data, backbone, "
            f"weights, size and epochs; status was {was}): training starts again, the cached "
            "activations are reused"
        )
    _write(out, {"format": FORMAT, "config": config, "status": "running", "started": now, "attempts": attempts})
    return message


def finish(out: str | os.PathLike, status: str, **extra) -> None:
    """Record how the run in ``out`` ended (``complete``, ``interrupted``, ``failed``)."""
    out = Path(out)
    try:
        record = read_record(out)
    except RunConflict:
        return
    if record is None:
        return
    record.update(status=status, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    _write(out, record)


__all__ = [
    "LOCK_FILE",
    "OWN_FILES",
    "OWN_FOLDERS",
    "RUN_FILE",
    "RunConflict",
    "RunLocked",
    "available_memory",
    "batch_bytes",
    "data_digest",
    "estimate_bytes",
    "finish",
    "image_size_problem",
    "lock",
    "own_outputs",
    "prepare",
    "read_record",
]
