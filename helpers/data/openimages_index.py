"""Which Open Images photos to fetch: the published label and image CSVs, streamed and filtered.

:mod:`helpers.data.openimages` says which files are read and why (its docstring); this module
reads them line by line (:func:`stream_csv`), never storing one whole, and keeps the images whose
human-verified labels carry exactly one of lion, tiger or bear (no teddy bear) and whose licence
is CC BY 2.0 (:func:`find_candidates`). Fetching the photos themselves is
:func:`helpers.data.openimages.fetch_open_images`.
"""

from __future__ import annotations

import csv
import http.client
import io
import urllib.error
import urllib.request
from collections import Counter

METADATA_BASE = "https://storage.googleapis.com"
SUBSETS = {
    "validation": (
        "openimages/v7/oidv7-val-annotations-human-imagelabels.csv",
        "openimages/2018_04/validation/validation-images-with-rotation.csv",
    ),
    "test": (
        "openimages/v7/oidv7-test-annotations-human-imagelabels.csv",
        "openimages/2018_04/test/test-images-with-rotation.csv",
    ),
}
CLASSES = {"lion": {"/m/096mb"}, "tiger": {"/m/07dm6"}, "bear": {"/m/01dws", "/m/01dxs", "/m/03bj1", "/m/0633h"}}
TEDDY_BEAR = "/m/0kmg4"
HUMAN_SOURCES = {"verification", "crowdsource-verification", "human"}  # "human": the V2-V3 files' name
CC_BY_2 = "https://creativecommons.org/licenses/by/2.0/"
LABEL_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
IMAGE_COLUMNS = tuple("ImageID Subset OriginalLandingURL License AuthorProfileURL Author Title Rotation".split())
TIMEOUT = 20.0

_MID_CLASS = {mid: name for name, mids in CLASSES.items() for mid in mids}


class OpenImagesUnavailable(RuntimeError):
    """Open Images could not be read (no network, host unreachable, or not the published files)."""


def request(url: str) -> urllib.request.Request:
    """A GET request for ``url`` that names the workbook (some hosts refuse anonymous clients)."""
    return urllib.request.Request(url, headers={"User-Agent": "transfer-workbook"})


def _open(url: str, timeout: float):
    try:
        return urllib.request.urlopen(request(url), timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise OpenImagesUnavailable(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from exc


def stream_csv(url: str, columns: tuple[str, ...], timeout: float = TIMEOUT):
    """Yield the rows of a CSV served at ``url`` as dicts, line by line; the caller may stop early."""
    response = _open(url, timeout)
    try:
        reader = csv.reader(io.TextIOWrapper(response, encoding="utf-8", newline=""))
        header = next(reader, [])
        missing = [c for c in columns if c not in header]
        if missing:
            raise OpenImagesUnavailable(f"{url} is not the published file: no column {', '.join(missing)}")
        index = [header.index(c) for c in columns]
        for row in reader:
            if len(row) == len(header):
                yield {c: row[i] for c, i in zip(columns, index)}
    except (http.client.HTTPException, OSError, UnicodeDecodeError) as exc:
        raise OpenImagesUnavailable(f"reading {url} failed: {exc}") from exc
    finally:
        response.close()


def find_candidates(meta_base: str, per_class: int, timeout: float) -> tuple[list[dict], Counter, bool]:
    """Stream the subsets' label and image CSVs until each class has enough licensed candidates.

    Returns the candidates (rows of the image CSV, with their ``class``), the images left out
    by reason, and whether every subset was read (no more candidates to be had).
    """
    found: list[dict] = []
    skipped: Counter = Counter()
    want = per_class + max(5, per_class // 10)  # a margin for broken or missing photos
    for n_read, (subset, (labels_path, images_path)) in enumerate(SUBSETS.items(), start=1):
        wanted = _one_class_images(f"{meta_base}/{labels_path}", timeout, skipped)
        _licensed_images(f"{meta_base}/{images_path}", subset, wanted, timeout, skipped, found)
        if all(sum(c["class"] == name for c in found) >= want for name in CLASSES):
            return found, +skipped, n_read == len(SUBSETS)  # + drops the zero counts
    return found, +skipped, True


def _one_class_images(url: str, timeout: float, skipped: Counter) -> dict[str, str]:
    """``{image ID: class}`` for the images whose human-verified labels carry exactly one of our classes."""
    positive: dict[str, set[str]] = {}
    unverified: set[str] = set()
    for row in stream_csv(url, LABEL_COLUMNS, timeout):
        mid = row["LabelName"]
        if mid not in _MID_CLASS and mid != TEDDY_BEAR:
            continue
        try:
            confidence = float(row["Confidence"])
        except ValueError:
            confidence = 0.0
        if row["Source"] not in HUMAN_SOURCES:
            if confidence > 0:  # a machine-generated label: not good enough
                unverified.add(row["ImageID"])
        elif confidence == 1.0:
            positive.setdefault(row["ImageID"], set()).add(_MID_CLASS.get(mid, "teddy bear"))
    wanted = {}
    for image_id, classes in positive.items():
        if "teddy bear" in classes:
            skipped["teddy bear"] += 1
        elif len(classes) > 1:
            skipped["two or three of lion/tiger/bear"] += 1
        else:
            wanted[image_id] = classes.pop()
    skipped["label not human-verified"] += len(unverified - positive.keys())
    return wanted


def _licensed_images(
    url: str, subset: str, wanted: dict[str, str], timeout: float, skipped: Counter, found: list[dict]
) -> None:
    """Add to ``found`` the image rows of ``wanted`` licensed CC BY 2.0 (reading stops past the last one)."""
    last, in_order = max(wanted, default=""), True
    previous = ""
    for row in stream_csv(url, IMAGE_COLUMNS, timeout):
        image_id = row["ImageID"]
        in_order, previous = in_order and image_id >= previous, image_id
        if in_order and image_id > last:
            break  # sorted by ID: no candidate can follow
        name = wanted.pop(image_id, None)
        if name is None:
            continue
        if row["License"].strip() != CC_BY_2:
            skipped["licence not CC BY 2.0"] += 1
        else:
            found.append(dict(row, Subset=row["Subset"] or subset, **{"class": name}))
        if not wanted:
            break
    skipped["no image metadata"] += len(wanted)
