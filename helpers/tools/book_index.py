"""The book's index page: one line per notebook with its key numbers, the run's ``notebooks.json`` (helpers.tools.book).

The key numbers are those the kernels noted (:func:`helpers.store.numbers.record`, read back by
:func:`read_numbers`), written as words (:func:`format_number`), beside the seconds, the forward passes
per photo, the backend and the device.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

SUMMARY = "notebooks.json"  # helpers.tools.notebooks.SUMMARY (not imported: the book is read without the runner)

INDEX_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222;
  line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
.run { color: #444; margin-top: 0; }
ol.notebooks { padding-left: 0; list-style: none; }
ol.notebooks li { padding: 0.55em 0.8em; border-bottom: 1px solid #eee; }
ol.notebooks li.failed { background: #ffebee; }
ol.notebooks a { font-weight: 600; color: #1565c0; text-decoration: none; }
.status { display: inline-block; min-width: 4.5em; font-size: 0.85em; font-weight: 700; }
.status.ok { color: #2e7d32; } .status.failed { color: #c62828; } .status.pending { color: #777; }
.numbers { color: #333; }
.error { color: #b71c1c; font-family: ui-monospace, monospace; font-size: 0.9em; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; font-size: 0.92em; }
td, th { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre.json { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def read_numbers(path: str | os.PathLike) -> dict[str, dict]:
    """``numbers.jsonl`` as ``{notebook: {name: value}}`` (later records win); torn lines are skipped."""
    found: dict[str, dict] = {}
    path = Path(path)
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            found.setdefault(str(entry["notebook"]), {}).update(dict(entry["numbers"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def format_number(name: str, value: object) -> str:
    """``("test_accuracy", 0.9333)`` → ``"test accuracy 93.3%"``; ``("fit_seconds", 3.21)`` → ``"fit 3.2 s"``."""
    label = name if " " in name else name.replace("_", " ")  # a name with spaces is shown as it is
    if isinstance(value, float) and "accuracy" in name and 0 <= value <= 1:
        shown = f"{value:.1%}"
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and name.endswith("seconds"):
        shown = f"{value:.1f} s"
        label = "" if label == "seconds" else label.removesuffix(" seconds")
    elif isinstance(value, float):
        shown = f"{value:.3g}"
    else:
        shown = str(value)
    return f"{label} {shown}".strip()


def entry_label(entry: dict) -> str:
    """``03 · Train the head``: the title, with the notebook's number in front unless it starts with it."""
    number = entry["name"].split("_", 1)[0]
    title = entry["title"]
    return title if title.startswith(number) or title == entry["name"] else f"{number} · {title}"


def plain_page(title: str, css: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
        f"<title>{html.escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _setup_line(numbers: dict[str, dict]) -> str:
    """``backend tensorflow · device CPU`` (each distinct value the kernels recorded)."""
    parts = []
    for name in ("backend", "device"):
        values = list(dict.fromkeys(str(n[name]) for n in numbers.values() if name in n))
        if values:
            parts.append(f"{name} {' / '.join(values)}")
    return " · ".join(parts)


def _passes_lines(summary: dict) -> list[str]:
    lines = []
    for net in summary.get("forward_passes_per_network") or []:
        key = net.get("key", {})
        ratio = net.get("ratio")
        lines.append(
            f"{key.get('backbone', '?')} at {key.get('image_size', '?')} px: "
            + (f"{ratio:.2f} forward passes per photo " if ratio is not None else "")
            + f"({net.get('computed', 0)} through the frozen part for {net.get('distinct', 0)} distinct photos)"
        )
    if summary.get("forward_passes_error"):
        lines.append(f"forward passes not counted: {summary['forward_passes_error']}")
    return lines


def _entry_line(entry: dict, numbers: dict) -> str:
    state = entry["state"]
    parts = []
    if state != "pending":
        parts.append(f"{float(entry.get('seconds') or 0):.1f} s")
    parts += [format_number(k, v) for k, v in numbers.items() if k not in ("backend", "device", "photos")]
    if "photos" in numbers and len(parts) > 1:
        parts[-1] += f" on {numbers['photos']} photos"
    shown = html.escape(" · ".join(parts))
    error = ""
    if state == "failed":
        error = f'<div class="error">{html.escape(str(entry.get("error") or ""))}</div>'
    if entry.get("render_error"):
        error += f'<div class="error">page not rendered: {html.escape(entry["render_error"])}</div>'
    label = {"ok": "ok", "failed": "TIMED OUT" if entry.get("timed_out") else "FAILED", "pending": "not run"}[state]
    return (
        f'<li class="{state}"><span class="status {state}">{label}</span> '
        f'<a href="{entry["page"]}">{html.escape(entry_label(entry))}</a> '
        f'<span class="numbers">— {shown}</span>{error}</li>'
    )


def _summary_table(summary: dict) -> str:
    rows = []
    for item in summary["notebooks"]:
        parameters = ", ".join(f"{k}={v!r}" for k, v in (item.get("parameters") or {}).items()) or "defaults"
        rows.append(
            "<tr>"
            f"<td>{html.escape(str(item.get('name')))}</td>"
            f"<td>{'ok' if item.get('ok') else 'FAILED'}</td>"
            f'<td class="num">{float(item.get("seconds") or 0):.1f}</td>'
            f"<td>{html.escape(str(item.get('error') or ''))}</td>"
            f"<td>{html.escape(parameters)}</td>"
            "</tr>"
        )
    for name in summary.get("pending") or []:
        rows.append(f"<tr><td>{html.escape(str(name))}</td><td>pending</td><td></td><td></td><td></td></tr>")
    return (
        "<table><tr><th>notebook</th><th>result</th><th>seconds</th><th>error</th><th>parameters</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def index_page(summary: dict, entries: list[dict], numbers: dict[str, dict], run_dir: Path) -> str:
    ran = [e for e in entries if e["state"] != "pending"]
    failed = [e for e in entries if e["state"] == "failed"]
    total = sum(float(e.get("seconds") or 0) for e in ran)
    headline = f"{len(ran) - len(failed)} of {len(entries)} notebooks ran in {total:.1f} s"
    if failed:
        headline += f"; FAILED: {', '.join(e['name'] for e in failed)}"
    if not summary.get("complete", True):
        headline += "; the run did not finish"
    facts = [headline] + [x for x in [_setup_line(numbers)] if x] + _passes_lines(summary)
    items = "\n".join(_entry_line(e, numbers.get(e["name"], {})) for e in entries)
    body = (
        "<h1>Transfer Learning Workbook</h1>\n"
        '<p class="run">The notebooks as they ran: read them here, run them in JupyterLab.</p>\n'
        "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>\n"
        f'<h2>Notebooks</h2>\n<ol class="notebooks">\n{items}\n</ol>\n'
        f'<h2>The run: <a href="{SUMMARY}">{SUMMARY}</a></h2>\n'
        + _summary_table(summary)
        + f'\n<details><summary>{SUMMARY} in full</summary><pre class="json">'
        + html.escape(json.dumps(summary, indent=2, sort_keys=True))
        + "</pre></details>\n"
    )
    return plain_page("Transfer Learning Workbook — the executed notebooks", INDEX_CSS, body)
