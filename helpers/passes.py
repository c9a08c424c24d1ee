"""Forward-pass accounting: how many photos really went through the frozen part of a network.

The workbook's promise is one forward pass per photo (per backbone, image size and weights)
across all notebooks: the bottleneck cache serves the rest. Code that runs photos through a
frozen base calls :func:`record` where the work happens, with the content digests of the
photos it was asked for and how many of them it actually computed (not served from a cache).

Each call appends one JSON line to the file named by ``$WORKBOOK_PASS_LOG``; without that
variable :func:`record` does nothing. ``python -m helpers notebooks --out DIR`` points it at
``DIR/passes.jsonl`` for every notebook kernel and writes :func:`summarise` of it into
``DIR/notebooks.json`` under ``forward_passes``. Several processes may append at once: each
record is one ``os.write`` of one line on a file opened with ``O_APPEND``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

LOG_ENV = "WORKBOOK_PASS_LOG"
#: Set by the notebook runner to the running notebook's name; stored with each record.
SOURCE_ENV = "WORKBOOK_PASS_SOURCE"


def log_path() -> Path | None:
    """The pass log named by ``$WORKBOOK_PASS_LOG``, or None when accounting is off."""
    value = os.environ.get(LOG_ENV)
    return Path(value) if value else None


def record(key: dict, photo_ids: Sequence[str], computed: int, kind: str = "frozen") -> None:
    """Append one record: ``computed`` of the photos ``photo_ids`` went through the network ``key``.

    ``key`` names the network, e.g. ``{"backbone": "mobilenet_v2", "image_size": 224,
    "weights": "<digest or name>"}``; ``photo_ids`` are content digests of the photos asked
    for (``helpers.cache.file_digest``); ``kind`` tells what ran (``"frozen"``: the frozen
    base below a cut point). A no-op unless ``$WORKBOOK_PASS_LOG`` is set.
    """
    path = log_path()
    if path is None:
        return
    computed = int(computed)
    if computed < 0:
        raise ValueError(f"computed must be >= 0, not {computed}")
    entry = {
        "key": key,
        "kind": str(kind),
        "photo_ids": [str(p) for p in photo_ids],
        "computed": computed,
        "pid": os.getpid(),
    }
    source = os.environ.get(SOURCE_ENV)
    if source:
        entry["source"] = source
    line = (json.dumps(entry, sort_keys=True, default=_jsonable) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)  # one write of one line: appends from several processes never interleave
        if written != len(line):  # only on a full disk or a signal; finish the line rather than lose it
            os.write(fd, line[written:])
    finally:
        os.close(fd)


def summarise(log_path: str | os.PathLike) -> list[dict]:
    """Group a pass log by key and kind: distinct photos, photos computed, and their ratio.

    Returns one ``{"key", "kind", "distinct", "computed", "ratio"}`` per group, in the order
    groups first appear; ``ratio`` is ``computed / distinct`` (1.0 is one pass per photo;
    None when no photo was named). A missing or empty log gives ``[]``; a line that is not
    a record raises ``ValueError`` naming the line.
    """
    path = Path(log_path)
    if not path.is_file():
        return []
    groups: dict[tuple[str, str], dict] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                key, kind = entry["key"], entry.get("kind", "frozen")
                photo_ids, computed = entry["photo_ids"], int(entry["computed"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a pass record ({exc}): {line[:200]!r}") from None
            group = groups.setdefault(
                (json.dumps(key, sort_keys=True), kind), {"key": key, "kind": kind, "ids": set(), "computed": 0}
            )
            group["ids"].update(photo_ids)
            group["computed"] += computed
    summary = []
    for group in groups.values():
        distinct = len(group["ids"])
        summary.append(
            {
                "key": group["key"],
                "kind": group["kind"],
                "distinct": distinct,
                "computed": group["computed"],
                "ratio": group["computed"] / distinct if distinct else None,
            }
        )
    return summary


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars, e.g. an image size from an array
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
