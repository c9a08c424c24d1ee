"""Read it without running: the executed workbook as a static HTML book.

``python -m helpers book --from runs/notebooks [--out DIR]`` (and ``python -m helpers
notebooks --out DIR`` at its end, into ``DIR/book``) renders the executed notebooks of a run
with nbconvert into ``index.html`` and one page per notebook: figures embedded as data URIs,
no script, stylesheet or font from anywhere else, relative links only, so the book opens from
the file system (``file://``) as from any static host. The index lists the notebooks in
order, one line each with the run's key numbers (accuracy, seconds, forward passes per photo,
backend and device), and the run's ``notebooks.json``; a failed notebook is shown as failed,
with its error, and whatever of it ran.

Key numbers come from ``notebooks.json`` (seconds, ok, error, forward passes) and from the
kernels: the helpers a notebook already calls for its result (``plots.show_predictions``,
``curves.verdict``, ``evaluate.evaluate``, ``small_data.accuracy_vs_photos``,
``compare.compare_backbones``, and the runner's kernel hook :mod:`helpers.tools.kernel` for backend
and device) call :func:`helpers.store.numbers.record`, which appends them to ``$WORKBOOK_NUMBERS`` —
``DIR/numbers.jsonl``, set by the notebook runner for its kernels — and does nothing anywhere else.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter

from helpers.files import current_umask, staging_dir
from helpers.settings import PROJECT_ROOT
from helpers.store.numbers import NUMBERS, NUMBERS_ENV, record  # record: re-exported, where the book began
from helpers.tools import book_index
from helpers.tools.book_index import SUMMARY, format_number, index_page, plain_page, read_numbers

MARKER = ".workbook-book"  # in every book folder: the only kind of folder a rebuild replaces
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


# --- building the book ------------------------------------------------------------------


CSS = """
.book-nav { font-family: system-ui, sans-serif; font-size: 15px; display: flex; gap: 1.5em;
  justify-content: space-between; max-width: 1100px; margin: 0.8em auto; padding: 0.6em 1em;
  border: 1px solid #ddd; border-radius: 6px; background: #fafafa; }
.book-nav a { text-decoration: none; color: #1565c0; }
.book-nav span.none { color: #999; }
.book-failed { font-family: system-ui, sans-serif; max-width: 1100px; margin: 0.8em auto; padding: 0.8em 1em;
  border: 2px solid #c62828; border-radius: 6px; background: #ffebee; color: #b71c1c; }
.book-failed pre { white-space: pre-wrap; margin: 0.4em 0 0 0; }
.book-widget { font-style: italic; color: #555; }
"""

TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block extra_css %}<style type="text/css">{{ resources.book_css }}</style>{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.book_top }}{%- endblock body_header -%}
{% block body_footer %}{{ resources.book_bottom }}{{ super() }}{% endblock body_footer %}
"""


class BookError(ValueError):
    """A ``--from`` or ``--out`` the book cannot use; the message says which and what to do."""


def build_book(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Render the run in ``run_dir`` (``notebooks.json`` and the executed notebooks) into ``out``.

    ``out`` defaults to ``run_dir/book``. The book is built in a temporary folder beside
    ``out`` and renamed into place, so ``out`` is always a whole book (the old one until the
    new one is complete). ``out`` must be a folder this function wrote before, an empty
    folder, or not exist; anything else is refused rather than replaced. Returns ``out``.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "book"
    summary = _read_summary(run_dir)
    _check_out(out, run_dir)
    numbers = read_numbers(run_dir / NUMBERS)
    entries = _entries(summary, run_dir)
    pages = {f"{e['name']}.ipynb": e["page"] for e in entries}
    with staging_dir(out, "building") as staging:
        for position, entry in enumerate(entries):
            previous = entries[position - 1] if position else None
            following = entries[position + 1] if position + 1 < len(entries) else None
            page = _link_pages(_notebook_page(entry, previous, following, numbers.get(entry["name"], {})), pages)
            (staging / entry["page"]).write_text(page, encoding="utf-8")
        (staging / "index.html").write_text(index_page(summary, entries, numbers, run_dir), encoding="utf-8")
        (staging / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (staging / MARKER).write_text("written by python -m helpers book; rebuilding replaces this folder\n")
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp made it 0700; a static host serves it to others
        _swap_into_place(staging, out)
    return out


def _read_summary(run_dir: Path) -> dict:
    path = run_dir / SUMMARY
    how = "pass the --out folder of `python -m helpers notebooks --out DIR`"
    if not run_dir.is_dir():
        what = "is a file, not a folder" if run_dir.exists() else "does not exist"
        raise BookError(f"--from {run_dir}: {what}; {how}")
    if not path.is_file():
        raise BookError(f"--from {run_dir}: no {SUMMARY} in it, so no executed notebooks to render; {how}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(summary.get("notebooks"), list):
            raise ValueError("no list of notebooks")
    except (ValueError, AttributeError) as exc:
        raise BookError(f"{path}: not a notebooks summary ({exc}); run the notebooks again to rewrite it") from None
    return summary


def _check_out(out: Path, run_dir: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BookError(f"--out {out} is a file; the book is a folder: choose a folder path")
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise BookError(f"--out {out} holds the run itself ({run_dir}); choose a folder beside or inside it")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise BookError(
            f"--out {out} is a folder with other files in it (not a book this command wrote); "
            "choose a new or empty folder"
        )


def _swap_into_place(staging: Path, out: Path) -> None:
    """Rename the built book over ``out``: the old book (if any) moves aside first, then goes."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)  # put the old book back: never no book at all
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _entries(summary: dict, run_dir: Path) -> list[dict]:
    """One entry per notebook, in the run's order: ran (ok or failed), then those still pending."""
    entries = []
    for item in summary["notebooks"]:
        name = str(item.get("name", ""))
        entries.append({**item, "name": name, "state": "ok" if item.get("ok") else "failed"})
    for name in summary.get("pending") or []:
        entries.append({"name": str(name), "state": "pending"})
    for entry in entries:
        entry["page"] = _page_name(entry["name"])
        entry["source"] = run_dir / f"{entry['name']}.ipynb"
        entry["title"] = _title(entry["source"], entry["name"])
    return entries


def _page_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "notebook"
    return f"{safe}.html"


def _title(source: Path, name: str) -> str:
    """The notebook's first Markdown heading (the executed copy's, else the stored one's), else its name."""
    stored = PROJECT_ROOT / "notebooks" / source.name
    try:
        nb = json.loads((source if source.is_file() else stored).read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "markdown":
                text = "".join(cell.get("source", ""))
                match = re.search(r"^#+\s+(.+)$", text, re.MULTILINE)
                if match:
                    return re.sub(r"[*_`]", "", match.group(1)).strip()
    except (OSError, ValueError, AttributeError):
        pass
    return name


def _link(entry: dict | None, arrow: str) -> str:
    if entry is None:
        return f'<span class="none">{arrow}</span>'
    label = html.escape(book_index.entry_label(entry))
    if arrow == "←":
        return f'<a href="{entry["page"]}" rel="prev">← {label}</a>'
    return f'<a href="{entry["page"]}" rel="next">{label} →</a>'


def _nav(previous: dict | None, following: dict | None) -> str:
    return f'<nav class="book-nav">{_link(previous, "←")}<a href="index.html">contents</a>{_link(following, "→")}</nav>'


def _failure_banner(entry: dict) -> str:
    if entry["state"] == "pending":
        return '<div class="book-failed"><strong>Not run:</strong> the run stopped before this notebook.</div>'
    if entry["state"] != "failed":
        return ""
    what = "timed out" if entry.get("timed_out") else "failed"
    return (
        f'<div class="book-failed"><strong>This notebook {what}</strong> after {entry.get("seconds", 0):.1f} s; '
        f"what ran is shown below.<pre>{html.escape(str(entry.get('error') or ''))}</pre></div>"
    )


def _notebook_page(entry: dict, previous: dict | None, following: dict | None, numbers: dict) -> str:
    top = _nav(previous, following) + _failure_banner(entry)
    bottom = _nav(previous, following)
    if entry["state"] == "pending":  # a copy there is from an earlier run, or being written: not this run's
        return plain_page(entry["title"], CSS, top + bottom)
    if not entry["source"].is_file():
        body = f"<p>No executed copy of {html.escape(entry['name'])}.ipynb was written.</p>"
        return plain_page(entry["title"], CSS, top + body + bottom)
    try:
        return _render(entry["source"], top, bottom)
    except Exception as exc:  # noqa: BLE001 - an unreadable notebook is one page's problem, not the book's
        entry["render_error"] = f"{type(exc).__name__}: {exc}"
        body = f"<p>Could not render {html.escape(entry['source'].name)}: {html.escape(entry['render_error'])}</p>"
        return plain_page(entry["title"], CSS, top + body + bottom)


def _render(source: Path, top: str, bottom: str) -> str:
    nb = nbformat.read(str(source), as_version=4)
    _replace_widgets(nb)
    nb.metadata.pop("widgets", None)
    exporter = HTMLExporter(
        template_name="lab",
        template_file="book.html.j2",
        extra_loaders=[jinja2.DictLoader({"book.html.j2": TEMPLATE})],
        embed_images=True,
    )
    resources = {"book_css": CSS, "book_top": top, "book_bottom": bottom, "metadata": {"name": source.stem}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def _link_pages(page: str, pages: dict[str, str]) -> str:
    """A link to another notebook of the run (``href="03_train_the_head.ipynb#x"``) goes to its page in the book."""

    def swap(match: re.Match) -> str:
        target = pages.get(match.group(2).removeprefix("./"))
        return f"{match.group(1)}{target}{match.group(3)}" if target else match.group(0)

    return re.sub(r'(href=")([^"#?/]*\.ipynb)([#"])', swap, page)


PROGRESS_BAR = re.compile(r"\|.*\|\s*\d+/\d+\s*\[")  # tqdm's text: "bottleneck:  40%|####  | 6/15 [00:01<…]"


def _replace_widgets(nb) -> None:
    """Widgets need a kernel: in the book each is a sentence saying so (with its text when short); progress bars go."""
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                text = "".join(data.get("text/plain", ""))
                if PROGRESS_BAR.search(text):
                    continue  # a progress bar frozen at its first draw says nothing afterwards
                shown = f": <code>{html.escape(text)}</code>" if text and len(text) <= 200 else ""
                output["data"] = {
                    "text/html": f'<p class="book-widget">An interactive widget was here{shown} '
                    "— open the notebook in JupyterLab and run it to use it.</p>"
                }
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept


def book_pages(book: str | os.PathLike) -> list[Path]:
    """The HTML pages of a built book, index first."""
    book = Path(book)
    return [book / "index.html"] + sorted(p for p in book.glob("*.html") if p.name != "index.html")


__all__: Iterable[str] = [
    "NUMBERS", "NUMBERS_ENV", "record", "read_numbers", "format_number", "SUMMARY", "build_book", "BookError",
    "book_pages",
]  # fmt: skip
