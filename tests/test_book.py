"""The executed workbook as a static HTML book (helpers/tools/book.py, ``python -m helpers book``).

A tiny run of two real notebooks (one records key numbers and draws a figure, one fails) is
executed by ``python -m helpers notebooks``, which builds the book at its end; the book is
checked as files and in a real browser (Debian's Chromium through Playwright, from
``file://``, with every request that is not a file refused): every page loads with no console
error, every image decodes, every link resolves, and the next/previous links walk the
notebooks in order. ``tests/test_notebooks.py`` runs the same browser check on the book of
the quick workbook. :func:`check_book_in_browser` is shared with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, artifacts_dir
from test_faults import in_process

from helpers.tools import book, cli

# --- the kernels' side: key numbers --------------------------------------------------------


def test_record_writes_only_where_the_runner_asks(tmp_path, monkeypatch):
    target = tmp_path / "numbers.jsonl"
    monkeypatch.delenv(book.NUMBERS_ENV, raising=False)
    book.record(accuracy=0.5)
    assert not target.exists()

    monkeypatch.setenv(book.NUMBERS_ENV, str(target))
    monkeypatch.setenv("WORKBOOK_PASS_SOURCE", "03_train_the_head")
    import numpy as np

    book.record(accuracy=np.float32(0.75), photos=np.int64(12))
    book.record(accuracy=0.875, note=Path("x"))
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[0] == {"notebook": "03_train_the_head", "numbers": {"accuracy": 0.75, "photos": 12}}
    assert book.read_numbers(target) == {"03_train_the_head": {"accuracy": 0.875, "photos": 12, "note": "x"}}

    monkeypatch.setenv(book.NUMBERS_ENV, str(tmp_path / "missing-folder" / "numbers.jsonl"))
    book.record(accuracy=0.5)  # cannot be written: the lesson goes on


def test_read_numbers_skips_a_torn_line(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text('{"notebook": "a", "numbers": {"x": 1}}\n{"notebook": "a", "numb\n')
    assert book.read_numbers(path) == {"a": {"x": 1}}
    assert book.read_numbers(tmp_path / "none.jsonl") == {}


def test_format_number():
    assert book.format_number("accuracy", 0.9333) == "accuracy 93.3%"
    assert book.format_number("accuracy_before", 1.0) == "accuracy before 100.0%"
    assert book.format_number("accuracy of mobilenet_v2", 0.5) == "accuracy of mobilenet_v2 50.0%"
    assert book.format_number("fit_seconds", 3.21) == "fit 3.2 s"
    assert book.format_number("photos", 60) == "photos 60"


# --- a tiny run, executed by the notebooks command, which builds the book ------------------


def _notebook(path: Path, cells: list) -> None:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def write_tiny_notebooks(folder: Path) -> Path:
    folder.mkdir(parents=True)
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    _notebook(
        folder / "00_tiny.ipynb",
        [
            md("# 00 · A tiny notebook\n\nIt records a key number and draws. Next: [the failing one](01_fails.ipynb)."),
            code("SIZE = 3", metadata={"tags": ["parameters"]}),
            md("## A number for the book"),
            code("from helpers.store.numbers import record\n\nrecord(accuracy=0.875, photos=8)\nprint('recorded')"),
            md("## A figure"),
            code("import matplotlib.pyplot as plt\n\nplt.plot(range(SIZE), [1, 3, 2])\nplt.title('a line');"),
            md("Curves drawn by a plot helper, which shows its figure itself (notebooks 03 and 04; `;` as there)."),
            code(
                "from helpers.show import curves\n\ncurves.plot_history({'loss': [1.0, 0.5], 'val_loss': [1.1, 0.7]});"
            ),
        ],
    )
    _notebook(
        folder / "01_fails.ipynb",
        [
            md("# 01 · This one fails\n\nBack to [the tiny one](00_tiny.ipynb#A-figure)."),
            code("print('before the failure')"),
            code("raise ValueError('a planned failure')"),
            code("print('never')"),
        ],
    )
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """``python -m helpers notebooks --notebooks-dir TINY --out RUN``: 00 runs, 01 fails; the book is RUN/book.

    The command line's ``main`` in this process (no TensorFlow start-up of its own); the notebooks run in the
    runner's real kernels, as ever."""
    root = tmp_path_factory.mktemp("tiny_book")
    notebooks_dir = write_tiny_notebooks(root / "notebooks")
    result = in_process("notebooks", "--notebooks-dir", str(notebooks_dir), "--out", str(root / "run"))
    return {"root": root, "run": root / "run", "book": root / "run" / "book", "result": result}


@pytest.mark.slow
def test_the_notebooks_command_ends_with_the_book_even_when_a_notebook_failed(tiny_run):
    result, run, out = tiny_run["result"], tiny_run["run"], tiny_run["book"]
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]  # 01 failed
    assert f"book: {out / 'index.html'}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["index.html", "00_tiny.html", "01_fails.html", "notebooks.json", book.MARKER]
    )
    assert json.loads((out / "notebooks.json").read_text()) == json.loads((run / "notebooks.json").read_text())

    index = (out / "index.html").read_text()
    ok_line = re.search(r'<li class="ok">.*?</li>', index, re.S).group(0)
    assert "00 · A tiny notebook" in ok_line and "accuracy 87.5% on 8 photos" in ok_line
    failed_line = re.search(r'<li class="failed">.*?</li>', index, re.S).group(0)
    assert "FAILED" in failed_line and "ValueError: a planned failure" in failed_line
    assert "1 of 2 notebooks ran" in index and "FAILED: 01_fails" in index
    import keras

    assert f"backend {keras.backend.backend()} · device CPU" in index  # by the runner's kernel hook

    tiny = (out / "00_tiny.html").read_text()
    figures = re.findall(r'<img[^>]+src="data:image/png;base64,', tiny)
    assert len(figures) == 2, "both figures, pyplot's and the plot helper's, are embedded in the page, once each"
    assert "&lt;Figure size" not in tiny
    assert 'href="01_fails.html"' in tiny  # the Markdown link to the notebook now goes to its page
    failed = (out / "01_fails.html").read_text()
    assert "This notebook failed" in failed and "a planned failure" in failed and "before the failure" in failed
    assert 'href="00_tiny.html#A-figure"' in failed
    for page in book.book_pages(out):
        text = page.read_text()
        assert "<script" not in text, f"{page.name}: the book runs no script"
        assert not re.search(r'(src|href)="(https?:)?//', text), f"{page.name}: something is fetched from elsewhere"


@pytest.mark.slow
def test_the_tiny_book_in_a_real_browser(tiny_run):
    out = tiny_run["book"]
    assert out.is_dir(), tiny_run["result"].stderr[-3000:]
    report = check_book_in_browser(out, "tiny")
    assert report["pages"] == 3 and report["images"] == 2 and report["links"] >= 6, report


@pytest.mark.slow
def test_the_browser_check_fails_on_what_it_checks(tmp_path):
    """A console error, an image that does not decode, a fetch from elsewhere, a dead link, a missing anchor."""
    out = tmp_path / "broken"
    out.mkdir()
    (out / "index.html").write_text('<!DOCTYPE html><html><body><a href="00_a.html">00</a></body></html>')
    (out / "00_a.html").write_text(
        "<!DOCTYPE html><html><body>"
        '<img src="data:image/png;base64,iVBORw0KGgoAAAAN">'  # a PNG cut short
        '<img src="http://127.0.0.1:9/elsewhere.png">'
        '<a href="01_missing.html">missing</a><a href="index.html#nowhere">no anchor</a>'
        "<script>console.error('boom')</script></body></html>"
    )
    with pytest.raises(AssertionError) as failed:
        check_book_in_browser(out, "broken")
    message = str(failed.value)
    assert "127.0.0.1:9/elsewhere.png" in message  # refused before anything else is reported
    out_of_reach = tmp_path / "no-network"
    out_of_reach.mkdir()
    (out_of_reach / "index.html").write_text((out / "index.html").read_text())
    (out_of_reach / "00_a.html").write_text((out / "00_a.html").read_text().replace("http://127.0.0.1:9/", ""))
    with pytest.raises(AssertionError) as failed:
        check_book_in_browser(out_of_reach, "broken")
    message = str(failed.value)
    for expected in ("console error: boom", "image does not decode", "01_missing.html", "no id 'nowhere'"):
        assert expected in message, message


def test_book_command_refuses_a_run_without_notebooks_json(tmp_path, capsys):
    assert cli.main(["book", "--from", str(tmp_path), "--out", str(tmp_path / "book")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no notebooks.json" in err and str(tmp_path) in err
    assert not (tmp_path / "book").exists()
    assert cli.main(["book", "--from", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notebooks.json").write_text("{not json")
    assert cli.main(["book", "--from", str(tmp_path)]) == 2
    assert "not a notebooks summary" in capsys.readouterr().err


def fake_run(folder: Path) -> Path:
    """A run folder as the runner leaves it when no notebook got to run: notebooks.json only."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"notebooks": [], "pending": ["00_setup_and_devices"], "complete": False}
    (folder / "notebooks.json").write_text(json.dumps(summary))
    return folder


def test_book_out_must_be_a_book_an_empty_folder_or_new(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    a_file = tmp_path / "file.html"
    a_file.write_text("mine")
    assert cli.main(["book", "--from", str(run), "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "mine"

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert cli.main(["book", "--from", str(run), "--out", str(mine)]) == 2
    assert "other files in it" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    assert cli.main(["book", "--from", str(run), "--out", str(run)]) == 2  # never over the run itself
    assert (run / "notebooks.json").is_file()

    assert cli.main(["book", "--from", str(run)]) == 0  # default: RUN/book
    index = (run / "book" / "index.html").read_text()
    assert "0 of 1 notebooks ran" in index and "not run" in index
    assert (run / "book" / "00_setup_and_devices.html").is_file()


def test_a_rebuild_replaces_the_book_whole_or_not_at_all(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "run")
    out = book.build_book(run, tmp_path / "book")
    (out / "stale.html").write_text("from an earlier build")
    book.build_book(run, out)
    assert not (out / "stale.html").exists(), "a rebuild replaces the whole folder"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(book, "index_page", broken)
    with pytest.raises(OSError):
        book.build_book(run, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the earlier book is left as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "run"], "no half-built folder lingers"


# --- the browser ----------------------------------------------------------------------------


def skip_without_browser() -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set WORKBOOK_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed: pip install playwright (no `playwright install`)")


IMAGES_JS = """async () => {
  const found = [];
  for (const img of Array.from(document.images)) {
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    found.push({src: img.src.slice(0, 60), decoded, width: img.naturalWidth, height: img.naturalHeight});
  }
  return found;
}"""

LINKS_JS = """() => Array.from(document.querySelectorAll('a[href]')).map(a => ({
  href: a.getAttribute('href'), url: a.href, text: a.innerText.slice(0, 60),
  here: a.hash ? !!(document.getElementById(a.hash.slice(1))
                    || document.getElementById(decodeURIComponent(a.hash.slice(1)))) : null}))"""
# an anchor is found by the fragment as written, else decoded (the HTML standard's order; nbconvert's
# heading ids are percent-encoded)


def check_book_in_browser(out: Path, label: str) -> dict:
    """Open every page of the book ``out`` from ``file://`` in headless Chromium and check it.

    Fails on any console error or page error, any request that is not a local file (refused),
    an image that does not decode, a link to a file that is not there or to an anchor that
    is not on its page; then walks the next links from the first notebook to the last and the
    previous links back. Screenshots of the index and the first notebook page go to
    ``$WORKBOOK_ARTIFACTS/book/`` (default ``artifacts/book/``). Returns what it counted.
    """
    skip_without_browser()
    from playwright.sync_api import sync_playwright

    pages = book.book_pages(out)
    shots = artifacts_dir().parent / "book"
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    refused: list[str] = []
    counted = {"pages": 0, "images": 0, "links": 0}
    with sync_playwright() as api:
        browser = api.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.route(
                re.compile(r"^(?!file:|data:)"), lambda route: (refused.append(route.request.url), route.abort())
            )
            page = context.new_page()
            page.on(
                "console",
                lambda m: problems.append(f"{page.url}: console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda exc: problems.append(f"{page.url}: page error: {exc}"))
            page.on("requestfailed", lambda r: problems.append(f"{page.url}: request failed: {r.url} {r.failure}"))
            for path in pages:
                response = page.goto(path.as_uri(), wait_until="load")
                assert response is None or response.ok, f"{path.name} did not load"
                counted["pages"] += 1
                for image in page.evaluate(IMAGES_JS):
                    counted["images"] += 1
                    if not (image["decoded"] and image["width"] > 0 and image["height"] > 0):
                        problems.append(f"{path.name}: image does not decode: {image}")
                for link in page.evaluate(LINKS_JS):
                    counted["links"] += 1
                    problems += _link_problems(path, link)
                if path.name == "index.html" or path == pages[1]:
                    page.screenshot(path=str(shots / f"{label}_{path.stem}.png"), full_page=False)
            assert not refused, f"the book asked for something that is not a local file: {refused}"
            assert not problems, "\n".join(problems)
            counted["walked"] = _walk(page, pages)
        finally:
            browser.close()
    print(f"book {out}: {counted}; screenshots in {shots}")
    return counted


def _link_problems(page: Path, link: dict) -> list[str]:
    url = urlparse(link["url"])
    if url.scheme in ("http", "https", "mailto"):
        return []  # outside the book: not followed offline
    if url.scheme != "file":
        return [f"{page.name}: link {link['href']!r} is neither a file nor a web address"]
    target = Path(unquote(url.path))
    if not target.is_file():
        return [f"{page.name}: link {link['href']!r} ({link['text']!r}) goes to {target}, which is not there"]
    if url.fragment:
        if target == page:
            return [] if link["here"] else [f"{page.name}: anchor {link['href']!r} is not on the page"]
        ids = set(re.findall(r'\sid="([^"]+)"', target.read_text(encoding="utf-8")))
        if url.fragment not in ids and unquote(url.fragment) not in ids:
            return [f"{page.name}: link {link['href']!r}: no id {url.fragment!r} in {target.name}"]
    return []


def _walk(page, pages: list[Path]) -> int:
    """Follow rel=next from the first notebook to the last, then rel=prev back; each lands on the next page in order."""
    notebooks = pages[1:]
    page.set_default_timeout(10_000)
    page.goto(notebooks[0].as_uri())
    for expected in notebooks[1:]:
        page.locator("nav.book-nav a[rel=next]").first.click()
        page.wait_for_url(expected.as_uri())
    assert page.locator("nav.book-nav a[rel=next]").count() == 0, "the last notebook has no next"
    for expected in reversed(notebooks[:-1]):
        page.locator("nav.book-nav a[rel=prev]").first.click()
        page.wait_for_url(expected.as_uri())
    page.locator("nav.book-nav a", has_text="contents").first.click()
    page.wait_for_url(pages[0].as_uri())
    return len(notebooks)
