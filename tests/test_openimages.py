"""The default real photos: Open Images V7 lion / tiger / bear, fetched over HTTP from 127.0.0.1.

The real hosts cannot be reached here, so a local server serves the same paths
(``openimages/v7/…-human-imagelabels.csv``, ``openimages/2018_04/<subset>/…-images-with-rotation.csv``,
``<subset>/<ImageID>.jpg``) with the published CSV headers and JPEGs made with Pillow; the code
under test is the real one, pointed at it by ``WORKBOOK_OPENIMAGES_URL`` / ``base_url``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_datasets import TEST, TRAIN, closed_port, make_cifar_archive

from helpers.data import datasets, openimages, openimages_index
from helpers.data.download import sha256_of
from helpers.data.folders import check_data, load_folder

LABEL_HEADER = ["ImageID", "Source", "LabelName", "Confidence"]
IMAGE_HEADER = [
    "ImageID",
    "Subset",
    "OriginalURL",
    "OriginalLandingURL",
    "License",
    "AuthorProfileURL",
    "Author",
    "Title",
    "OriginalSize",
    "OriginalMD5",
    "Thumbnail300KURL",
    "Rotation",
]
LION, TIGER, BEAR, BROWN_BEAR, POLAR_BEAR, TEDDY_BEAR = (
    "/m/096mb",
    "/m/07dm6",
    "/m/01dws",
    "/m/01dxs",
    "/m/0633h",
    "/m/0kmg4",
)
CC_BY = "https://creativecommons.org/licenses/by/2.0/"


class Site:
    """Files under ``root`` served on 127.0.0.1; ``drop[path] = n`` cuts the next n transfers of a file in half."""

    def __init__(self, root: Path) -> None:
        self.root, self.requests, self.drop = root, [], Counter()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rel = self.path.lstrip("/")
                site.requests.append(rel)
                path = site.root / rel
                if not path.is_file():
                    self.send_error(404, "not here")
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if site.drop[rel] > 0:
                        site.drop[rel] -= 1
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: allowed
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def images(self) -> list[str]:
        return [r for r in self.requests if not r.startswith("openimages/")]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def jpeg(size=(60, 40), colour=(200, 150, 50), split=False, orientation=None) -> bytes:
    pixels = np.zeros((size[1], size[0], 3), np.uint8) + np.array(colour, np.uint8)
    if split:  # left half red, right half blue: shows which way a photo was turned
        pixels[:, : size[0] // 2] = (255, 0, 0)
        pixels[:, size[0] // 2 :] = (0, 0, 255)
    out, exif = io.BytesIO(), Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def image_id(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()[:16]


def build_site(root: Path, photos: list[dict]) -> None:
    """Write the label and image CSVs of each subset, and the JPEGs, for ``photos``.

    Each photo: ``id``, ``subset``, ``labels`` [(Source, LabelName, Confidence)], and optionally
    ``licence``, ``rotation``, ``body`` (the served bytes; None: not served), ``listed`` (in the image CSV).
    """
    for subset, (labels_path, images_path) in openimages_index.SUBSETS.items():
        mine = sorted((p for p in photos if p["subset"] == subset), key=lambda p: p["id"])
        for rel, header, rows in (
            (labels_path, LABEL_HEADER, [[p["id"], *label] for p in mine for label in p["labels"]]),
            (
                images_path,
                IMAGE_HEADER,
                [
                    [
                        p["id"],
                        subset,
                        f"https://farm.example/{p['id']}_o.jpg",
                        f"https://www.flickr.com/photos/someone/{p['id']}",
                        p.get("licence", CC_BY),
                        "https://www.flickr.com/people/someone/",
                        f"Author, {p['id'][:4]}",
                        f"A [title] for {p['id']}",
                        "12345",
                        "AAAA==",
                        "",
                        p.get("rotation", "0.0"),
                    ]
                    for p in mine
                    if p.get("listed", True)
                ],
            ),
        ):
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows([header, *rows])
        for p in mine:
            body = p.get("body", jpeg(colour=(int(p["id"][:2], 16), 100, 50)))
            if body is not None:
                (root / subset / f"{p['id']}.jpg").parent.mkdir(parents=True, exist_ok=True)
                (root / subset / f"{p['id']}.jpg").write_bytes(body)


def verified(*mids: str) -> list[tuple]:
    return [("verification", mid, "1") for mid in mids]


def scenario() -> tuple[list[dict], dict[str, str]]:
    """Good photos of each class plus one of each case that must be left out."""
    ids = {}

    def add(name, n, **kw):
        ids[name] = image_id(n)
        return dict(id=ids[name], subset=kw.pop("subset", "validation"), **kw)

    photos = [add(f"lion{i}", i, labels=verified(LION)) for i in range(4)]
    photos += [add(f"tiger{i}", 10 + i, labels=verified(TIGER)) for i in range(4)]
    photos += [
        add("turned", 20, labels=verified(LION), rotation="90.0", body=jpeg((60, 40), split=True)),
        add("large", 21, labels=verified(TIGER), body=jpeg((900, 600))),
        add("bear", 22, labels=verified(BEAR)),
        add("brown", 23, labels=[("crowdsource-verification", BROWN_BEAR, "1")]),
        add("polar", 24, labels=verified(BEAR, POLAR_BEAR)),
        add("exif", 25, labels=verified(BEAR), rotation="90.0", body=jpeg((60, 40), split=True, orientation=6)),
        add("two_classes", 30, labels=verified(LION, TIGER)),
        add("teddy", 31, labels=verified(BEAR, TEDDY_BEAR)),
        add("nc_licence", 32, labels=verified(LION), licence="https://creativecommons.org/licenses/by-nc/2.0/"),
        add("machine", 33, labels=[("machine", TIGER, "0.9")]),
        add("absent", 34, labels=[("verification", BEAR, "0")]),
        add("broken", 35, labels=verified(BEAR), body=b"<html>not a photo</html>"),
        add("truncated", 36, labels=verified(LION), body=jpeg()[:-300]),
        add("missing", 37, labels=verified(TIGER), body=None),
        add("unlisted", 38, labels=verified(LION), listed=False),
        add("test_lion", 40, labels=verified(LION), subset="test"),
        add("test_bear", 41, labels=verified(BEAR), subset="test"),
    ]
    return photos, ids


@pytest.fixture
def site(tmp_path: Path):
    photos, ids = scenario()
    build_site(tmp_path / "site", photos)
    server = Site(tmp_path / "site")
    server.ids = ids
    yield server
    server.close()


def read_manifest(dest: Path) -> dict[str, dict]:
    with open(dest / "manifest.csv", newline="") as f:
        return {row["image_id"]: row for row in csv.DictReader(f)}


def test_fetch_keeps_verified_single_class_cc_by_photos_and_credits_them(site: Site, tmp_path: Path):
    dest = tmp_path / "oi"
    report = openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    ids = site.ids
    assert report.counts == {"lion": 6, "tiger": 5, "bear": 5} and report.downloaded == 16 and report.complete
    assert report.skipped == {
        "two or three of lion/tiger/bear": 1,
        "teddy bear": 1,
        "licence not CC BY 2.0": 1,
        "label not human-verified": 1,
        "no image metadata": 1,
        "broken image": 2,
        "missing on the server": 1,
    }
    expected = {
        "lion": {ids[k] for k in ("lion0", "lion1", "lion2", "lion3", "turned", "test_lion")},
        "tiger": {ids[k] for k in ("tiger0", "tiger1", "tiger2", "tiger3", "large")},
        "bear": {ids[k] for k in ("bear", "brown", "polar", "exif", "test_bear")},
    }
    for name, wanted in expected.items():
        assert {p.stem for p in (dest / name).iterdir()} == wanted
    turned = np.asarray(Image.open(dest / "lion" / f"{ids['turned']}.jpg"))
    assert turned.shape[:2] == (60, 40)  # 90° counter-clockwise: the right (blue) half is now on top
    assert turned[5, 20, 2] > 200 and turned[-5, 20, 0] > 200
    upright = np.asarray(Image.open(dest / "bear" / f"{ids['exif']}.jpg"))  # EXIF 6 (turn 90° clockwise) wins:
    assert upright.shape[:2] == (60, 40) and upright[5, 20, 0] > 200 and upright[-5, 20, 2] > 200  # not both
    assert max(Image.open(dest / "tiger" / f"{ids['large']}.jpg").size) == openimages.MAX_SIDE
    manifest = read_manifest(dest)
    assert len(manifest) == 16
    for entry in manifest.values():
        assert sha256_of(dest / entry["file"]) == entry["sha256"]
    served = (tmp_path / "site" / "test" / f"{ids['test_bear']}.jpg").read_bytes()
    assert manifest[ids["test_bear"]]["source_sha256"] == hashlib.sha256(served).hexdigest()
    credits = (dest / "ATTRIBUTION.md").read_text()
    for entry in manifest.values():
        line = next(x for x in credits.splitlines() if entry["file"] in x)
        assert f"Author, {entry['image_id'][:4]}" in line and "CC BY 2.0" in line
        assert f"https://www.flickr.com/photos/someone/{entry['image_id']}" in line and r"\[title\]" in line
    assert ids["nc_licence"] not in credits and ids["teddy"] not in credits
    info = json.loads((dest / "dataset.json").read_text())
    assert info["complete"] and info["counts"] == report.counts
    assert load_folder(dest).class_names == ["bear", "lion", "tiger"] and check_data(dest).ok
    assert "Open Images: 6 lion, 5 tiger, 5 bear photos" in report.line()


def test_the_choice_is_a_seeded_hash_and_the_test_subset_is_read_only_when_needed(tmp_path: Path):
    photos = [
        dict(id=image_id(100 * c + i), subset="validation", labels=verified(mid))
        for c, mid in enumerate((LION, TIGER, BEAR))
        for i in range(8)
    ]
    photos.append(dict(id=image_id(999), subset="test", labels=verified(LION)))
    photos.append(dict(id=image_id(998), subset="validation", labels=verified(TIGER), listed=False))  # never found
    build_site(tmp_path / "site", photos)
    images_csv = tmp_path / "site" / openimages_index.SUBSETS["validation"][1]
    with open(images_csv, "a") as f:  # more rows after the last candidate (IDs are sorted), then bytes no one can read
        f.writelines(f"ffff{n:012x},validation,,,{CC_BY},,,,,,,0.0\n" for n in range(4000))
    with open(images_csv, "ab") as f:
        f.write(b"\xff\xfe\x00 not UTF-8: reading this far would fail\n")
    server = Site(tmp_path / "site")
    try:
        picked = {}
        for seed in (0, 1):
            dest = tmp_path / f"seed{seed}"
            report = openimages.fetch_open_images(dest, per_class=2, seed=seed, base_url=server.url)
            assert report.counts == {"lion": 2, "tiger": 2, "bear": 2}
            picked[seed] = {p.stem for p in dest.glob("*/*.jpg")}
            for c, name in enumerate(("lion", "tiger", "bear")):
                pool = [image_id(100 * c + i) for i in range(8)]
                best = sorted(pool, key=lambda i: hashlib.sha256(f"{seed}/{i}".encode()).hexdigest())[:2]
                assert {p.stem for p in (dest / name).iterdir()} == set(best)
        again = openimages.fetch_open_images(tmp_path / "again", per_class=2, seed=0, base_url=server.url)
        assert {p.stem for p in (tmp_path / "again").glob("*/*.jpg")} == picked[0] != picked[1]
        assert again.counts == report.counts
        assert not [r for r in server.requests if "test" in r]  # 8 per class in validation were enough
    finally:
        server.close()


def test_a_rerun_checks_every_file_and_fetches_only_what_changed(site: Site, tmp_path: Path):
    dest = tmp_path / "oi"
    openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    manifest = read_manifest(dest)
    site.requests.clear()
    quiet = openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    assert site.requests == [] and quiet.downloaded == 0 and quiet.counts == {"lion": 6, "tiger": 5, "bear": 5}

    ids = site.ids
    edited = dest / "lion" / f"{ids['lion1']}.jpg"
    edited.write_bytes(jpeg(colour=(0, 255, 0)))  # a checksum changed after the first download
    report = openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    assert report.changed == [f"lion/{ids['lion1']}.jpg"] and report.downloaded == 1
    assert site.images() == [f"validation/{ids['lion1']}.jpg"]  # the CSVs are not read again
    assert sha256_of(edited) == manifest[ids["lion1"]]["sha256"]
    assert len(list((dest / ".openimages" / "changed").iterdir())) == 1  # the changed file, kept aside
    assert "lion/" in report.line() and "changed" in report.line()

    (dest / "tiger" / f"{ids['tiger2']}.jpg").unlink()  # gone here, and different on the server
    (tmp_path / "site" / "validation" / f"{ids['tiger2']}.jpg").write_bytes(jpeg(colour=(1, 2, 3)))
    report = openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    assert report.changed == [f"tiger/{ids['tiger2']}.jpg"] and report.counts["tiger"] == 4
    assert report.skipped["changed on the server since the first download"] == 1
    assert not (dest / "tiger" / f"{ids['tiger2']}.jpg").exists() and ids["tiger2"] not in read_manifest(dest)


def test_an_interrupted_download_never_counts_and_a_rerun_resumes(site: Site, tmp_path: Path):
    ids, dest = site.ids, tmp_path / "oi"
    site.drop[f"validation/{ids['tiger0']}.jpg"] = 1  # dropped once: the retry gets it
    site.drop[f"validation/{ids['tiger1']}.jpg"] = 99  # dropped every time: not had this run
    report = openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    assert (dest / "tiger" / f"{ids['tiger0']}.jpg").is_file()
    assert site.requests.count(f"validation/{ids['tiger0']}.jpg") == 2
    assert not (dest / "tiger" / f"{ids['tiger1']}.jpg").exists() and ids["tiger1"] not in read_manifest(dest)
    assert site.requests.count(f"validation/{ids['tiger1']}.jpg") == 3  # tried three times, then given up
    assert report.counts["tiger"] == 4 and report.skipped["unreachable"] == 1 and not report.complete
    assert not [p for p in dest.rglob(".*.jpg")] and "run again" in report.line()
    assert json.loads((dest / "dataset.json").read_text())["complete"] is False

    site.drop.clear()
    site.requests.clear()
    report = openimages.fetch_open_images(dest, per_class=10, base_url=site.url)
    assert site.requests == [f"validation/{ids['tiger1']}.jpg"]  # only what was missing
    assert report.counts == {"lion": 6, "tiger": 5, "bear": 5} and report.complete and report.downloaded == 1


def test_a_file_that_is_not_the_published_csv_is_refused(tmp_path: Path):
    labels = tmp_path / "site" / openimages_index.SUBSETS["validation"][0]
    labels.parent.mkdir(parents=True)
    labels.write_text("ImageID,Source,LabelName\n0001,verification,/m/096mb\n")
    server = Site(tmp_path / "site")
    try:
        with pytest.raises(openimages.OpenImagesUnavailable, match="no column Confidence"):
            openimages.fetch_open_images(tmp_path / "oi", base_url=server.url)
    finally:
        server.close()
    assert not (tmp_path / "oi" / "dataset.json").exists()


def test_get_photos_fetches_open_images_by_default(site: Site, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("WORKBOOK_DATA", raising=False)
    monkeypatch.setenv(openimages.URL_ENV, site.url)
    folder = datasets.get_photos(openimages_kwargs={"dest": tmp_path / "oi", "per_class": 3})
    assert folder == tmp_path / "oi" and load_folder(folder).train.counts(3) != [0, 0, 0]
    assert "Open Images: 3 lion, 3 tiger, 3 bear photos" in capsys.readouterr().out


def test_unreachable_host_says_so_in_one_line_and_falls_back_to_cifar(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("WORKBOOK_DATA", raising=False)
    monkeypatch.setenv(openimages.URL_ENV, f"http://127.0.0.1:{closed_port()}")
    archive = make_cifar_archive(tmp_path / "cifar-100-python.tar.gz", TRAIN, TEST)
    folder = datasets.get_photos(
        openimages_kwargs={"dest": tmp_path / "oi"},
        dest=tmp_path / "cifar",
        size=32,
        archive=archive,
        sha256=sha256_of(archive),
    )
    assert folder == tmp_path / "cifar" and json.loads((folder / "dataset.json").read_text())["low_resolution"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Open Images could not be read" in lines[0] and "LOW-RESOLUTION" in lines[0] and "CIFAR-100" in lines[0]
    assert "--data" in lines[0] and "WORKBOOK_DATA" in lines[0]
    assert not (tmp_path / "oi" / "dataset.json").exists()


def test_a_host_that_goes_away_midway_stops_after_a_few_tries(site: Site, tmp_path: Path):
    for p in (tmp_path / "site").glob("*/*.jpg"):
        site.drop[f"{p.parent.name}/{p.name}"] = 99  # every photo's connection drops
    report = openimages.fetch_open_images(tmp_path / "oi", per_class=10, base_url=site.url)
    assert report.downloaded == 0 and not report.complete
    assert report.skipped["unreachable"] == openimages.GIVE_UP_AFTER  # then it stops asking
    assert len(site.images()) == 3 * openimages.GIVE_UP_AFTER and "run again" in report.line()


def test_a_manifest_the_workbook_did_not_write_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / "oi").mkdir()
    (tmp_path / "oi" / "manifest.csv").write_text("name,size\nx.jpg,3\n")
    with pytest.raises(ValueError, match="not a manifest this workbook wrote.*move .* away"):
        openimages.fetch_open_images(tmp_path / "oi", base_url="http://127.0.0.1:9")
    assert (tmp_path / "oi" / "manifest.csv").read_text() == "name,size\nx.jpg,3\n"


def test_too_few_photos_also_fall_back_saying_why(site: Site, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.delenv("WORKBOOK_DATA", raising=False)
    archive = make_cifar_archive(tmp_path / "cifar-100-python.tar.gz", TRAIN, TEST)
    folder = datasets.get_photos(
        openimages_kwargs={"dest": tmp_path / "oi", "per_class": 20, "base_url": site.url},
        dest=tmp_path / "cifar",
        archive=archive,
        sha256=sha256_of(archive),
    )
    assert folder == tmp_path / "cifar"  # 6, 5 and 5 photos: fewer than the 10 a class needs
    out, err = capsys.readouterr()
    assert "Open Images: 6 lion, 5 tiger, 5 bear photos" in out
    assert "too few Open Images photos" in err and "LOW-RESOLUTION" in err and "WORKBOOK_DATA" in err
