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
from collections.abc import Iterator, Sequence
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
    for (``helpers.store.cache.file_digest``); ``kind`` tells what ran (``"frozen"``: the frozen
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


def _records(log_path: str | os.PathLike) -> Iterator[tuple[dict, str, list, int]]:
    """Each record of a pass log as ``(key, kind, photo_ids, computed)``; none for a missing log.

    A line that is not a record raises ``ValueError`` naming the file and line.
    """
    path = Path(log_path)
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                record = entry["key"], entry.get("kind", "frozen"), list(entry["photo_ids"]), int(entry["computed"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a pass record ({exc}): {line[:200]!r}") from None
            yield record


def summarise(log_path: str | os.PathLike) -> list[dict]:
    """Group a pass log by key and kind: distinct photos, photos computed, and their ratio.

    Returns one ``{"key", "kind", "distinct", "computed", "ratio"}`` per group, in the order
    groups first appear; ``ratio`` is ``computed / distinct`` (1.0 is one pass per photo;
    None when no photo was named). A missing or empty log gives ``[]``; a line that is not
    a record raises ``ValueError`` naming the line.
    """
    groups: dict[tuple[str, str], dict] = {}
    for key, kind, photo_ids, computed in _records(log_path):
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


# --------------------------------------------------------------------------- every network, all kinds

#: The kind of the records :func:`count_keras_calls` writes.
PLAIN_KIND = "plain Keras calls on pixels (fit, evaluate, predict)"
#: The kind of the records the cache writes for activations it computed from the activations it
#: stores at a lower cut (its checkpoint), not from pixels: the rest of the same one pass.
CONTINUED_PREFIX = "continued from stored"
#: Augmented copies are other images than the photos: their passes are counted apart.
AUGMENTED_PREFIX = "augmented"


def totals(log_path: str | os.PathLike) -> list[dict]:
    """Per network (backbone, image size, weights): every pass through its frozen part, all cuts and kinds.

    The cache counts per cut point, so a photo that went up to ``pool`` in one notebook and up
    to a lower block in another counts once in each; here it counts twice, as it ran twice
    through the layers below that block. Plain Keras calls (:data:`PLAIN_KIND`) name no photos,
    so they add to ``computed`` and never to ``distinct``. Augmented copies are left out
    (they are other images), and so are activations continued from a stored checkpoint
    (:data:`CONTINUED_PREFIX`: the photo went through the layers below it once, counted there).
    Returns ``{"key", "distinct", "computed", "ratio", "kinds", "continued"}`` per network,
    ``kinds`` mapping each counted kind to the photos it computed, ``continued`` each kind of
    continued pass to its photos (reported, not in ``computed``).
    """
    networks: dict[str, dict] = {}
    for key, kind, photo_ids, computed in _records(log_path):
        if kind.startswith(AUGMENTED_PREFIX):
            continue
        net = networks.setdefault(
            json.dumps(key, sort_keys=True), {"key": key, "ids": set(), "computed": 0, "kinds": {}, "continued": {}}
        )
        if kind.startswith(CONTINUED_PREFIX):  # reported, not added: these photos were counted below the checkpoint
            net["continued"][kind] = net["continued"].get(kind, 0) + computed
            continue
        net["ids"].update(photo_ids)
        net["computed"] += computed
        net["kinds"][kind] = net["kinds"].get(kind, 0) + computed
    out = []
    for net in networks.values():
        distinct = len(net["ids"])
        out.append(
            {
                "key": net["key"],
                "distinct": distinct,
                "computed": net["computed"],
                "ratio": net["computed"] / distinct if distinct else None,
                "kinds": net["kinds"],
                "continued": net["continued"],
            }
        )
    return out
