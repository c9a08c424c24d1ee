"""The command line's commands around photos and notebooks: ``check-data``, ``notebooks``, ``book``,
``clean-notebooks``, ``sync-lesson`` (none of them trains)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.data.folders import check_data
from helpers.files import describe_os_error, write_json
from helpers.tools.book import BookError, build_book
from helpers.tools.cli_common import given, photo_folder
from helpers.tools.lesson_export import LESSON_FILE, sync
from helpers.tools.notebooks import NOTEBOOKS_DIR, SUMMARY, dirty_notebooks, run_notebooks, store_checked_outputs


def cmd_sync_lesson(args: argparse.Namespace) -> int:
    if sync(check=args.check):
        print(f"{LESSON_FILE} matches the notebooks' #@save cells")
        return 0
    if args.check:
        print(f"{LESSON_FILE} differs from the notebooks' #@save cells: run python -m helpers sync-lesson")
        return 1
    print(f"wrote {LESSON_FILE} from the notebooks' #@save cells")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    data = photo_folder(args.data)
    report = check_data(data, **given(args, "val_fraction", "seed", "min_side"))
    print(report.format(max_listed=args.max_listed))
    if args.json:
        print(f"wrote {write_json(args.json, report.to_dict())}")
    return 0 if report.ok else 1


def cmd_notebooks(args: argparse.Namespace) -> int:
    parameters = dict(args.parameter or [])  # text: checked and converted against the notebooks' parameters cells
    try:
        runs = run_notebooks(
            args.out,
            quick=args.quick,
            backbone=args.backbone,
            parameters=parameters,
            only=args.only,
            notebooks_dir=args.notebooks_dir or NOTEBOOKS_DIR,
            timeout=args.timeout,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out / SUMMARY} records the notebook that was stopped", file=sys.stderr)
        return 130
    failed = [run for run in runs if not run.ok]
    for run in failed:
        print(f"FAILED {run.name}: {run.error}", file=sys.stderr)
    return max(1 if failed else 0, _build_book(args.out, args.out / "book"))


def _build_book(run_dir: Path, out: Path | None) -> int:
    """Render the run's executed notebooks as a static HTML book (helpers.tools.book); 1 if it could not be written."""
    try:
        book = build_book(run_dir, out)
    except BookError as exc:
        print(f"error: book not built: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: book not built: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    print(f"book: {book / 'index.html'} (open it in a browser; it needs no server)")
    return 0


def cmd_book(args: argparse.Namespace) -> int:
    book = build_book(args.from_dir, args.out)  # a BookError (a ValueError) is one line and exit code 2
    print(f"book: {book / 'index.html'} (open it in a browser; it needs no server)")
    return 0


def cmd_clean_notebooks(args: argparse.Namespace) -> int:
    paths = args.paths or sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if args.outputs_from:
        for path in paths:
            executed = args.outputs_from / Path(path).name
            if executed.is_file():
                print(f"{path}: {store_checked_outputs(executed, path)} checked cells updated from {executed}")
    dirty = dirty_notebooks(paths, fix=not args.check)
    for path in dirty:
        print(f"{path}: {'not clean (run: python -m helpers clean-notebooks)' if args.check else 'cleaned'}")
    return 1 if args.check and dirty else 0
