"""Open Images download at the real files' sizes, served from 127.0.0.1: time and memory of each phase.

The real hosts are out of reach here, so this writes CSVs with the published headers and about
the published sizes (41,620 validation images, ~14 labels each: ~23 MB of labels, ~14 MB of image
rows), 820 lion/tiger/bear candidates and a 1024×683 JPEG for each, serves them with
``python -m http.server`` in another process, and runs :func:`helpers.data.openimages.fetch_open_images`
on them: the metadata phase (under tracemalloc, for the reader's peak memory), the first fetch of
600 photos, and a second call (manifest check only).

    .venv/bin/python benchmarks/openimages_local.py
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.data import openimages, openimages_index  # noqa: E402

HEADERS = (
    ["ImageID", "Source", "LabelName", "Confidence"],
    "ImageID Subset OriginalURL OriginalLandingURL License AuthorProfileURL Author Title OriginalSize OriginalMD5 "
    "Thumbnail300KURL Rotation".split(),
)


def build(root: Path) -> None:
    rng = random.Random(0)
    others = [f"/m/{i:05x}" for i in range(600)]
    ids = sorted(hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(41620))
    wanted = rng.sample(ids, 820)
    label_of = dict(zip(wanted, ["/m/096mb"] * 260 + ["/m/07dm6"] * 260 + ["/m/01dws"] * 300))
    labels_path, images_path = (root / p for p in openimages_index.SUBSETS["validation"])
    for path in (labels_path, images_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(labels_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADERS[0])
        for i in ids:
            writer.writerows([i, "verification", m, rng.choice("01")] for m in rng.sample(others, 13))
            if i in label_of:
                writer.writerow([i, "verification", label_of[i], "1"])
    with open(images_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADERS[1])
        for i in ids:
            writer.writerow(
                [i, "validation", f"https://c1.staticflickr.com/1/{i}_o.jpg", f"https://www.flickr.com/photos/a/{i}"]
                + [openimages_index.CC_BY_2, "https://www.flickr.com/people/a/", "An Author", "A title", "2000000"]
                + ["AAAAAAAAAAAAAAAAAAAAAA==", f"https://c1.staticflickr.com/1/{i}_z.jpg", "0.0"]
            )
    pixels = np.random.default_rng(0).integers(0, 255, (683, 1024, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).resize((1024, 683)).save(out, "JPEG", quality=85)
    (root / "validation").mkdir(exist_ok=True)
    for i in wanted:
        (root / "validation" / f"{i}.jpg").write_bytes(out.getvalue())
    sizes = [p.stat().st_size / 1e6 for p in (labels_path, images_path)]
    print(f"labels CSV {sizes[0]:.1f} MB, image CSV {sizes[1]:.1f} MB, each photo {len(out.getvalue()) / 1e3:.0f} kB")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        build(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            time.sleep(1.5)
            tracemalloc.start()
            start = time.perf_counter()
            found, _, _ = openimages_index.find_candidates(url, 200, openimages_index.TIMEOUT)
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
            print(f"metadata phase (under tracemalloc): {time.perf_counter() - start:.1f} s, {len(found)} candidates,")
            print(f"  peak Python memory of the reader {peak:.2f} MB")
            start = time.perf_counter()
            report = openimages.fetch_open_images(Path(tmp) / "photos", base_url=url, progress=False)
            print(f"first fetch (metadata + 600 photos): {time.perf_counter() - start:.1f} s; {report.line()}")
            start = time.perf_counter()
            openimages.fetch_open_images(Path(tmp) / "photos", base_url=url, progress=False)
            print(f"second call (check 600 files against the manifest): {time.perf_counter() - start:.2f} s")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
