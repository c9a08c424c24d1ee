"""Real lion, tiger and bear photos from Open Images V7, fetched in one call (:func:`fetch_open_images`).

What it keeps: images whose **human-verified** image-level labels (``Source`` ``verification`` or
``crowdsource-verification``, ``Confidence`` 1) carry exactly one of Lion ``/m/096mb``, Tiger
``/m/07dm6`` or Bear — ``/m/01dws`` and the animals below it in the official hierarchy
(``bbox_labels_600_hierarchy.json``): Brown bear ``/m/01dxs``, Panda ``/m/03bj1``, Polar bear
``/m/0633h``. That hierarchy also lists Teddy bear ``/m/0kmg4`` under Bear (it is under Toy too):
a toy, not an animal, so an image with that label is left out. Only images whose ``License``
column is ``https://creativecommons.org/licenses/by/2.0/`` are kept.

What it reads, over plain HTTPS with no account (all published by the dataset, paths as on
``storage.googleapis.com/openimages/web/download_v7.html``), each streamed line by line, never
stored whole:

1. ``openimages/v7/oidv7-val-annotations-human-imagelabels.csv`` (28.4 MB; columns ``ImageID,
   Source, LabelName, Confidence``): read to the end, keeping only the rows of our classes — every
   candidate must be seen before the seeded choice, and the file is ordered by image, not by label.
2. ``openimages/2018_04/validation/validation-images-with-rotation.csv`` (15.2 MB; ``ImageID,
   Subset, OriginalURL, OriginalLandingURL, License, AuthorProfileURL, Author, Title, OriginalSize,
   OriginalMD5, Thumbnail300KURL, Rotation``): author, title, licence and source page of each
   candidate; reading stops once every candidate was found (or, the IDs being sorted, passed).
3. Only while a class has fewer candidates than asked for (plus a margin for broken images), the
   same two files of the ``test`` subset (``oidv7-test-annotations-human-imagelabels.csv``, about
   three times the validation file, as the subset has three times the images; and
   ``test/test-images-with-rotation.csv``, 45.2 MB). The train files (2.7 GB of labels) are never read.
4. The photos: ``https://open-images-dataset.s3.amazonaws.com/<Subset>/<ImageID>.jpg``, the
   public bucket the Common Visual Data Foundation hosts, read by the official ``downloader.py``
   (github.com/openimages/dataset) through boto3 as ``<split>/<image_id>.jpg``.

Checked against: the dataset's README (github.com/openimages/dataset: the image-list and
human-label columns, Confidence 1/0, CC BY 2.0 as a URL), its page on rotated images
(``web/2018-05-17-rotation-information.html``: Rotation = degrees counter-clockwise, ``nan`` when
unknown), FiftyOne's ``fiftyone/utils/openimages.py`` (the same bucket layout and the same
``2018_04/<subset>/<subset>-images-with-rotation.csv`` URLs), TensorFlow Datasets' ``open_images.py``
(the human ``Source`` values) and public scripts that read the V7 human-label files by these names.

Each photo is turned upright (its EXIF orientation if it has one, else the CSV's ``Rotation``,
degrees counter-clockwise), resized to at most 400 px on its longest side and saved as
``dest/<class>/<ImageID>.jpg``, written atomically. Up to ``per_class`` per class are chosen by a
hash of the seed and the image ID, so every learner gets the same photos. ``manifest.csv`` records
each file's SHA-256 (and that of the bytes the server sent) on the first download; every later call
checks them: a changed file is named, moved to ``.openimages/changed/`` and fetched again; a photo
whose bytes changed on the server is not used. ``ATTRIBUTION.md`` credits every photo. A rerun
fetches only what is missing; a broken or missing image is skipped, counted, and replaced by the
next candidate. The base URL (``base_url=`` or ``$WORKBOOK_OPENIMAGES_URL``) replaces both hosts
and nothing else: the tests serve the same paths from 127.0.0.1. The real hosts could not be
reached where this was written; only that local copy of the layout was exercised.

Reading the CSVs (steps 1-3) is :mod:`helpers.data.openimages_index`; this module fetches, checks and
records the photos (step 4).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import math
import os
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from helpers import files
from helpers.data import checks
from helpers.data.download import sha256_of
from helpers.data.openimages_index import (
    CC_BY_2,
    CLASSES,
    METADATA_BASE,
    TIMEOUT,
    OpenImagesUnavailable,
    find_candidates,
    request,
)

IMAGES_BASE = "https://open-images-dataset.s3.amazonaws.com"
URL_ENV = "WORKBOOK_OPENIMAGES_URL"
MANIFEST_COLUMNS = ("file", "sha256", "source_sha256", "image_id", "class", "subset")
FOLDER_NAME = "lion-tiger-bear-openimages"
MAX_SIDE = 400
MAX_IMAGE_BYTES = 50 * 1024**2
GIVE_UP_AFTER = 3  # consecutive unreachable photos: the host is gone, stop and report


class _Gone(Exception):
    """This photo is not there (HTTP 4xx), not an image, or not the one first downloaded: skip it for good."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class FetchReport:
    """What :func:`fetch_open_images` did: photos per class, photos skipped (by reason), files that had changed."""

    folder: Path
    counts: dict[str, int]
    skipped: Counter = field(default_factory=Counter)
    changed: list[str] = field(default_factory=list)
    downloaded: int = 0
    complete: bool = True

    def line(self) -> str:
        per_class = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        why = "; ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()) if n)
        text = f"Open Images: {per_class} photos in {self.folder} ({self.downloaded} downloaded now)"
        text += f"; skipped: {why}" if why else ""
        if self.changed:
            text += f"; changed or missing since the first download (fetched again): {', '.join(self.changed)}"
        return text + ("" if self.complete else "; incomplete: run again to fetch the rest")


def _rank(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}/{image_id}".encode()).hexdigest()


def _get(url: str, timeout: float, attempts: int = 3) -> bytes:
    """The bytes at ``url``, retried on dropped connections and 5xx; :class:`_Gone` for 4xx."""
    problem: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request(url), timeout=timeout) as response:
                expected = response.headers.get("Content-Length")
                data = response.read(MAX_IMAGE_BYTES + 1)
            if len(data) > MAX_IMAGE_BYTES:
                raise _Gone("broken image", f"larger than {MAX_IMAGE_BYTES // 1024**2} MB")
            if expected is not None and expected.isdigit() and len(data) != int(expected):
                raise ConnectionError(f"connection closed after {len(data)} of {expected} bytes")
            return data
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise _Gone("missing on the server", f"HTTP {exc.code}") from exc
            problem = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            problem = exc
        time.sleep(0.2 * 2**attempt)
    raise OpenImagesUnavailable(f"cannot download {url}: {problem}")


def _save_photo(data: bytes, rotation: str, target: Path) -> None:
    """Decode, turn upright, shrink to MAX_SIDE and write ``target`` atomically; :class:`_Gone` if broken."""
    problem = checks.jpeg_stream_problem(data) if data[:2] == b"\xff\xd8" else None
    if problem:
        raise _Gone("broken image", problem)
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = opened
            if opened.getexif().get(0x0112, 1) == 1:  # no EXIF orientation: use the CSV's Rotation
                degrees = float(rotation) if rotation.strip() else 0.0
                if math.isfinite(degrees) and int(degrees) % 360 in (90, 180, 270):
                    image = opened.rotate(int(degrees) % 360, expand=True)  # counter-clockwise
            image = checks.to_rgb(image)
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _Gone("broken image", str(exc)) from exc
    with files.atomic_path(target) as tmp:  # a full disk is an error, not a broken photo
        image.save(tmp, "JPEG", quality=90)


def _write_json(path: Path, value) -> None:
    with files.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1) + "\n")


def _write_manifest(dest: Path, manifest: dict[str, dict]) -> None:
    with files.atomic_path(dest / "manifest.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(manifest.values(), key=lambda r: r["file"]))


def _md(text: str) -> str:
    text = " ".join(text.split()) or "untitled"
    return "".join("\\" + ch if ch in "\\`*_[]<>|#" else ch for ch in text)


def _write_attribution(dest: Path, manifest: dict[str, dict], by_id: dict[str, dict]) -> None:
    lines = [
        "# Photo credits\n",
        "Photos from Open Images V7 (https://storage.googleapis.com/openimages/web/index.html), each listed",
        "there under CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/) and resized here to at most",
        f"{MAX_SIDE} px on the longest side. Title, author, licence and source page of each:\n",
    ]
    for entry in sorted(manifest.values(), key=lambda r: r["file"]):
        meta = by_id.get(entry["image_id"], {})
        author = _md(meta.get("Author", "unknown"))
        if meta.get("AuthorProfileURL"):
            author = f"[{author}]({meta['AuthorProfileURL']})"
        lines.append(
            f'- `{entry["file"]}`: "{_md(meta.get("Title", ""))}" by {author}, '
            f"[CC BY 2.0]({CC_BY_2}), source: <{meta.get('OriginalLandingURL', '')}> (Open Images {entry['image_id']})"
        )
    with files.atomic_path(dest / "ATTRIBUTION.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def fetch_open_images(
    dest: str | os.PathLike,
    per_class: int = 200,
    seed: int = 0,
    base_url: str | None = None,
    timeout: float = TIMEOUT,
    progress: bool = True,
) -> FetchReport:
    """Fetch (or resume, or check) up to ``per_class`` real photos per class into ``dest/<class>/``.

    Raises :class:`OpenImagesUnavailable` when the metadata cannot be read (no network, host
    unreachable); a photo that cannot be had is skipped and counted in the report instead.
    """
    dest = Path(dest).expanduser()
    base = (base_url or os.environ.get(URL_ENV) or "").rstrip("/")
    meta_base, images_base = (base, base) if base else (METADATA_BASE, IMAGES_BASE)
    state = dest / ".openimages"
    manifest = _read_manifest(dest)
    report = FetchReport(dest, {name: 0 for name in CLASSES})
    _set_aside_changed(dest, manifest, report)
    info = _read_json(dest / "dataset.json")
    if info.get("complete") and info.get("per_class") == per_class and info.get("seed") == seed and not report.changed:
        report.counts = {name: sum(e["class"] == name for e in manifest.values()) for name in CLASSES}
        return report  # checked, nothing to fetch: no network needed
    candidates = _candidates(state, meta_base, per_class, timeout, report)
    run = _Fetch(dest, images_base, timeout, manifest, _read_json(state / "gone.json"), report)
    with tqdm(
        total=per_class * len(CLASSES), desc="Open Images photos", unit="photo", disable=not progress, leave=False
    ) as run.bar:
        for name in CLASSES:
            mine = sorted((c for c in candidates if c["class"] == name), key=lambda c: _rank(seed, c["ImageID"]))
            run.fetch_class(name, mine, per_class)
    for stale in [i for i, e in manifest.items() if i in run.gone and not (dest / e["file"]).is_file()]:
        del manifest[stale]  # changed, and not the same photo on the server any more
    _write_manifest(dest, manifest)
    _write_attribution(dest, manifest, {c["ImageID"]: c for c in candidates})
    dataset = {"source": "Open Images V7", "licence": "CC BY 2.0", "max_side": MAX_SIDE, "per_class": per_class}
    dataset.update(seed=seed, counts=report.counts, skipped=dict(+report.skipped), complete=report.complete)
    _write_json(dest / "dataset.json", dataset)
    return report


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_manifest(dest: Path) -> dict[str, dict]:
    """``{image ID: manifest row}`` from ``dest/manifest.csv`` (empty before the first download)."""
    if not (dest / "manifest.csv").is_file():
        return {}
    with open(dest / "manifest.csv", newline="") as f:
        reader = csv.DictReader(f)
        if set(MANIFEST_COLUMNS) - set(reader.fieldnames or ()):
            raise ValueError(
                f"{dest / 'manifest.csv'} is not a manifest this workbook wrote (columns "
                f"{', '.join(MANIFEST_COLUMNS)}): move {dest} away and run again"
            )
        return {row["image_id"]: row for row in reader}


def _set_aside_changed(dest: Path, manifest: dict[str, dict], report: FetchReport) -> None:
    """Verify every recorded file: a changed one is named and moved to ``.openimages/changed/``."""
    state = dest / ".openimages"
    for image_id, entry in list(manifest.items()):
        path = dest / entry["file"]
        if path.is_file() and sha256_of(path) == entry["sha256"]:
            continue
        report.changed.append(entry["file"])
        if path.is_file():
            (state / "changed").mkdir(parents=True, exist_ok=True)
            shutil.move(path, state / "changed" / f"{image_id}.{time.time_ns()}.jpg")


def _candidates(state: Path, meta_base: str, per_class: int, timeout: float, report: FetchReport) -> list[dict]:
    """The candidates saved by an earlier run when they suffice, else found anew (and saved)."""
    saved = _read_json(state / "candidates.json")
    if saved and (saved["per_class"] >= per_class or saved["exhausted"]):
        candidates, skipped_before = saved["candidates"], Counter(saved["skipped"])
    else:
        candidates, skipped_before, exhausted = find_candidates(meta_base, per_class, timeout)
        state.mkdir(parents=True, exist_ok=True)
        saved = {"per_class": per_class, "exhausted": exhausted, "candidates": candidates, "skipped": skipped_before}
        _write_json(state / "candidates.json", saved)
    report.skipped.update(skipped_before)
    return candidates


@dataclass
class _Fetch:
    """One run of :func:`fetch_open_images` over the photos: where they go, what is known, what was done."""

    dest: Path
    images_base: str
    timeout: float
    manifest: dict[str, dict]
    gone: dict[str, str]  # image ID → why it is skipped for good
    report: FetchReport
    unreachable: int = 0  # consecutive photos the host did not answer for
    bar: tqdm | None = None

    def fetch_class(self, name: str, candidates: list[dict], per_class: int) -> None:
        """Up to ``per_class`` photos of ``name``, in the seeded order of ``candidates``."""
        (self.dest / name).mkdir(parents=True, exist_ok=True)
        for leftover in (self.dest / name).glob(".*.jpg"):  # a temporary file from an interrupted run
            leftover.unlink()
        for cand in candidates:
            if self.report.counts[name] >= per_class:
                break
            image_id = cand["ImageID"]
            entry = self.manifest.get(image_id)
            if entry and f"{name}/{image_id}.jpg" not in self.report.changed:
                self.report.counts[name] += 1
                self.bar.update(1)
                continue
            if image_id in self.gone:
                self.report.skipped[self.gone[image_id]] += 1
                continue
            if self.unreachable >= GIVE_UP_AFTER:
                self.report.complete = False  # the host is gone: the rest waits for the next run
                break
            if self._fetch_one(name, cand, entry):
                self.report.counts[name] += 1
                self.report.downloaded += 1
                self.bar.update(1)

    def _fetch_one(self, name: str, cand: dict, entry: dict | None) -> bool:
        """Download, check and save one photo and record it in the manifest; False when it is skipped."""
        image_id = cand["ImageID"]
        target = self.dest / name / f"{image_id}.jpg"
        try:
            data = _get(f"{self.images_base}/{cand['Subset']}/{image_id}.jpg", self.timeout)
            self.unreachable = 0
            source_sha = hashlib.sha256(data).hexdigest()
            if entry and entry["source_sha256"] != source_sha:
                raise _Gone("changed on the server since the first download")
            _save_photo(data, cand.get("Rotation", ""), target)
        except OpenImagesUnavailable:
            self.unreachable += 1
            self.report.skipped["unreachable"] += 1
            self.report.complete = False
            return False
        except _Gone as exc:
            self.gone[image_id] = exc.reason
            self.report.skipped[exc.reason] += 1
            (self.dest / ".openimages").mkdir(parents=True, exist_ok=True)
            _write_json(self.dest / ".openimages" / "gone.json", self.gone)
            return False
        self.manifest[image_id] = {
            "file": f"{name}/{image_id}.jpg",
            "sha256": sha256_of(target),
            "source_sha256": source_sha,
            "image_id": image_id,
            "class": name,
            "subset": cand["Subset"],
        }
        _write_manifest(self.dest, self.manifest)
        return True
