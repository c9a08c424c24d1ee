"""``python -m helpers …``: the workbook's command line (README.md lists the commands).

Each sub-command is a thin wrapper over the helper module that does the work, so what
a notebook teaches and what the command line runs are the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from helpers import settings

CACHE_ENV = "WORKBOOK_CACHE"  # helpers.store.cache.CACHE_ENV (not imported here: it would load TensorFlow)
_UNSET = object()
_HELD = contextlib.ExitStack()
"""What a command holds until :func:`main` returns, however it returns (``train``: the run lock of ``--out``)."""


class UsageError(Exception):
    """A command-line mistake: the message says what to pass instead (exit code 2)."""


def _photo_folder(given: Path | None) -> Path:
    """Photos the way the notebooks find them: ``given``, ``$WORKBOOK_DATA``, Open Images (fetched once), CIFAR-100."""
    from helpers.data.datasets import get_photos

    if given is not None and not given.is_dir():
        what = "is a file, not a folder" if given.exists() else "does not exist"
        raise FileNotFoundError(
            f"photo folder {given} {what}: pass the folder that holds one sub-folder per "
            "class (DIR/<class>/*.jpg or DIR/{train,val}/<class>/*.jpg)"
        )
    return get_photos(given)


def _weights(value: str) -> str | None:
    return None if value.lower() in ("none", "random") else value


def _defaults(function) -> dict:
    """A function's keyword defaults: the one place a command-line default comes from."""
    import inspect

    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options the user gave (not None); the rest keep the helper function's own defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _warn(line: str) -> None:
    print(
        line if line.startswith(("WARNING", "warning", "skipped")) else f"warning: {line}", file=sys.stderr, flush=True
    )


def _print_data_warnings(report, limit: int = 10) -> None:
    """What check-data knows about the photos, before the work starts: warnings, then skipped files."""
    from helpers.data.checks import display_name

    for path, why in report.ignored:  # the workbook's own folders inside the photo folder: said once
        if why.startswith(("the workbook's", "the notebook runner's", "the --out folder", "the activation cache")):
            print(f"note: skipped {display_name(path, report.root)}: {why}", file=sys.stderr, flush=True)
    for line in report.warnings:
        _warn(line)
    skipped = report.skipped
    for f in skipped[:limit]:
        _warn(f"skipped {display_name(f.path, report.root)}: {'; '.join(f.reasons)}")
    if len(skipped) > limit:
        _warn(
            f"… and {len(skipped) - limit} more skipped files (python -m helpers check-data {report.root} "
            "lists them all)"
        )


def _check_image_size(backbone: str, image_size: int | None, batch_size: int) -> None:
    """Refuse, before any work, a photo size the backbone cannot take or that would not fit in memory."""
    from helpers.model.backbones import get_spec
    from helpers.run.runs import image_size_problem

    spec = get_spec(backbone)
    problem = image_size_problem(
        spec.name, spec.default_size if image_size is None else image_size, spec.min_size, batch_size
    )
    if problem:
        raise UsageError(problem)


def _at_least(name: str, value: int | None, least: int) -> None:
    if value is not None and value < least:
        raise UsageError(f"{name} must be at least {least}, got {value}")


def _block(value: str) -> str | int:
    """``--fine-tune-from``: a block name (``mixed9``) or how many top blocks (``2``)."""
    return int(value) if value.isdigit() else value


def cmd_sync_lesson(args: argparse.Namespace) -> int:
    from helpers.tools.lesson_export import LESSON_FILE, sync

    if sync(check=args.check):
        print(f"{LESSON_FILE} matches the notebooks' #@save cells")
        return 0
    if args.check:
        print(f"{LESSON_FILE} differs from the notebooks' #@save cells: run python -m helpers sync-lesson")
        return 1
    print(f"wrote {LESSON_FILE} from the notebooks' #@save cells")
    return 0


#: What makes a `train` run: recorded in run.json, compared on a re-run, and passed to train_classifier.
RUN_SETTINGS = (
    "backbone",
    "per_class",
    "image_size",
    "epochs",
    "fine_tune_from",
    "fine_tune_epochs",
    "seed",
    "batch_size",
    "patience",
)


def cmd_train(args: argparse.Namespace) -> int:
    from helpers import files
    from helpers.run import runs

    if args.epochs is not None and args.epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, got {args.epochs}")
    _at_least("--per-class", args.per_class, 1)
    _at_least("--batch-size", args.batch_size, 1)
    from helpers.run.train import train_classifier

    settings_ = _defaults(train_classifier) | _given(args, *RUN_SETTINGS)
    _check_image_size(settings_["backbone"], settings_["image_size"], settings_["batch_size"])
    weights = settings_["weights"] if args.weights is _UNSET else args.weights
    data = _photo_folder(args.data)
    cache_dir = args.cache_dir or (Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else None)
    # every place we will write is checked before the expensive work starts
    files.check_output_dir(args.out, runs.estimate_bytes(settings_["backbone"], weights), "--out folder")
    if cache_dir is not None and not args.no_cache:
        files.check_output_dir(cache_dir, 0, "cache folder")
    run = {k: settings_[k] for k in RUN_SETTINGS}
    config = runs.run_config(data, weights=weights, **run)
    _HELD.enter_context(runs.lock(args.out, fresh=args.fresh))  # one live run per --out, until main returns
    print(runs.prepare(args.out, config, fresh=args.fresh), flush=True)
    if settings_["epochs"] == 0:
        print(
            "--epochs 0: no head training; the saved model keeps the new head's random initial weights"
            + (" (fine-tuning still runs)" if settings_["fine_tune_from"] and settings_["fine_tune_epochs"] else ""),
            flush=True,
        )
    try:
        from helpers.data.folders import survey_folder
        from helpers.run.device import configure

        own = {args.out: "the --out folder of this run, not photos"}
        if cache_dir is not None and not args.no_cache:
            own[cache_dir] = "the activation cache of this run (--cache-dir), not photos"
        report = survey_folder(data, seed=settings_["seed"], own_folders=own)
        _print_data_warnings(report)
        if report.errors:
            raise ValueError(report.errors[0])
        if report.dropped and not args.allow_missing_classes:
            name, why = next(iter(report.dropped.items()))
            more = f" (and {len(report.dropped) - 1} more classes)" if len(report.dropped) > 1 else ""
            raise UsageError(
                f"class '{name}' {why}{more}: not training without it; fix the folder, or pass "
                f"--allow-missing-classes to train on the other {len(report.class_names)} classes"
            )
        configure()  # a GPU gets mixed precision, XLA and every GPU; a CPU runs as it is
        metrics = train_classifier(
            data,
            args.out,
            weights=weights,
            **run,
            cache=not args.no_cache,
            cache_dir=cache_dir,
            with_imagenet_prior=not args.no_imagenet_prior,
        )
    except KeyboardInterrupt:
        runs.finish(args.out, "interrupted")
        raise
    except BaseException as exc:
        runs.finish(args.out, "failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        raise
    runs.finish(args.out, "complete", val_accuracy=metrics["val_accuracy"])

    def score(key: str) -> str:
        value = metrics[key]
        return f"{key} {value:.4f}" if value is not None else f"{key} n/a (no {key.split('_')[0]} photos)"

    print(
        f"{score('val_accuracy')}  {score('test_accuracy')}  "
        f"train_seconds {metrics['train_seconds']:.1f}  "
        f"({metrics['n_train']} training photos, {metrics['backbone']} at {metrics['image_size']}px)"
    )
    if not metrics["imagenet_prior"].startswith("not used"):
        print(
            f"the saved model multiplies the head's probabilities by {metrics['imagenet_prior']}'s ImageNet opinion "
            f"(the head alone: val_accuracy {metrics['head_only_val_accuracy'] or 0:.4f}; --no-imagenet-prior: "
            "the head alone)"
        )
    if not metrics["n_val"]:
        print("note: no validation photos: no epoch was chosen, the last one was kept", file=sys.stderr)
    print(f"wrote {Path(args.out) / 'model.keras'} and {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from helpers.files import human_size
    from helpers.store.cache import BottleneckCache, list_caches

    store = BottleneckCache(args.cache_dir)
    if args.clear:
        freed = store.clear()
        print(f"cleared the bottleneck cache at {store.root} ({human_size(freed)} freed)")
    else:
        print(list_caches(store.root))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from helpers.tools import bench

    bench_defaults = _defaults(bench.run)
    _check_image_size(args.backbone or bench_defaults["backbone"], args.image_size, bench_defaults["batch_size"])
    data = _photo_folder(args.data)
    given = _given(args, "backbone", "image_size", "images", "max_cached_epochs", "fine_tune_blocks")
    if args.weights is not _UNSET:
        given["weights"] = args.weights
    if args.epochs is not None:
        given["epochs"] = [int(e) for e in str(args.epochs).split(",") if e.strip()]
    result = bench.run(data, **given)
    if args.json:
        print(f"wrote {bench.write(result, args.json)}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from helpers.data.folders import check_data
    from helpers.files import write_json

    data = _photo_folder(args.data)
    report = check_data(data, **_given(args, "val_fraction", "seed", "min_side"))
    print(report.format(max_listed=args.max_listed))
    if args.json:
        print(f"wrote {write_json(args.json, report.to_dict())}")
    return 0 if report.ok else 1


def cmd_notebooks(args: argparse.Namespace) -> int:
    from helpers.tools.notebooks import NOTEBOOKS_DIR, SUMMARY, run_notebooks

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
    from helpers.files import describe_os_error
    from helpers.tools.book import BookError, build_book

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
    from helpers.tools.book import build_book

    book = build_book(args.from_dir, args.out)  # a BookError (a ValueError) is one line and exit code 2
    print(f"book: {book / 'index.html'} (open it in a browser; it needs no server)")
    return 0


def cmd_clean_notebooks(args: argparse.Namespace) -> int:
    from helpers.tools.notebooks import NOTEBOOKS_DIR, dirty_notebooks, store_checked_outputs

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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from helpers import files
    from helpers.data.checks import not_a_file_reason
    from helpers.run.evaluate import EVALUATION_FILE

    odd = not_a_file_reason(args.model)
    if odd and odd != "no such file":
        raise FileNotFoundError(f"model file {args.model}: {odd}; pass a model.keras file")
    if not args.model.is_file():
        raise FileNotFoundError(
            f"model file {args.model} does not exist; train one with "
            "`python -m helpers train --out DIR` (it writes DIR/model.keras)"
        )
    out = args.out or args.model.parent
    files.check_output_dir(out, 256 << 10, "--out folder" if args.out else "the model's folder")
    data = _photo_folder(args.data)
    from helpers.run.evaluate import evaluate_model

    result = evaluate_model(args.model, data, split=args.split, out=out, on_warning=_warn)
    which = "every photo (the folder has no split folders)" if result.split == "all" else f"the {result.split} split"
    counts = ", ".join(f"{n} {name}" for name, n in result.counts().items())
    print(
        f"scored {len(result.labels)} photos of {data}, {which}: {counts}"
        + (f"; {len(result.skipped)} could not be read (named above)" if result.skipped else "")
    )
    print(f"accuracy {result.accuracy:.4f} on {len(result.labels)} {result.split} photos of {data}")
    for name, scores in result.per_class().items():
        print(
            f"  {name:12s} precision {scores['precision']:.3f}  recall {scores['recall']:.3f}  "
            f"({int(scores['support'])} photos)"
        )
    print(f"wrote {Path(out) / EVALUATION_FILE}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from helpers.data.checks import not_a_file_reason
    from helpers.run.evaluate import open_model, predict_files
    from helpers.ship.export import class_names_for

    odd = not_a_file_reason(args.model)
    if odd and odd != "no such file":  # a FIFO would hang the read
        raise FileNotFoundError(f"model file {args.model}: {odd}; pass a model.keras file")
    model = open_model(args.model)
    names = class_names_for(args.model)
    if names is None:
        names = [f"class_{i}" for i in range(int(model.output_shape[-1]))]
        print(f"warning: no labels.txt or metrics.json beside {args.model}; showing class numbers", file=sys.stderr)
    failed = 0
    for result in predict_files(model, args.images, names, top=args.top):
        if result.error:
            failed += 1
            print(f"error: {result.error}", file=sys.stderr)
            continue
        print(f"{result.path}: " + ", ".join(f"{name} {p:.3f}" for name, p in result.top), flush=True)
    return 1 if failed else 0


def cmd_gpu_check(args: argparse.Namespace) -> int:
    from helpers.tools.gpu_check import main as gpu_check

    if args.image_size is not None:  # InceptionV3; the batch as on the CPU unless given
        _check_image_size("inception_v3", args.image_size, args.batch_size or 8)
    return gpu_check(
        allow_cpu=args.allow_cpu,
        image_size=args.image_size,
        images=args.images,
        batch_size=args.batch_size,
        epochs=args.epochs,
        precision=args.precision,
        blocks=args.blocks,
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line. Defaults are None here and come from the helper functions' own defaults
    (``helpers.run.train.train_classifier``, ``helpers.tools.bench.run``, ``helpers.data.folders.check_data``), so
    no default is written twice."""
    from helpers.data.checks import MIN_SIDE
    from helpers.data.folders import VAL_FRACTION

    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    photos = f"photo folder (default: ${settings.DATA_ENV}, else Open Images lion/tiger/bear photos, offline CIFAR-100)"

    p = sub.add_parser("train", help="train a Lion/Tiger/Bear (or your own) classifier")
    p.add_argument("--data", type=Path, help=photos)
    p.add_argument("--backbone", help="default: train_classifier's (inception_v3)")
    p.add_argument("--weights", type=_weights, default=_UNSET, help="imagenet (default) | PATH | none")
    p.add_argument("--per-class", type=int, help="use only N training photos per class")
    p.add_argument(
        "--image-size",
        type=int,
        help="default: the backbone's own size; below its smallest input, or too big for memory: refused",
    )
    p.add_argument("--epochs", type=int, help="epochs of head training (cheap: on cached features); 0: no training")
    p.add_argument(
        "--fine-tune-from",
        type=_block,
        help="after head training, unfreeze this block (a name, or N = the top N blocks) and above",
    )
    p.add_argument("--fine-tune-epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument(
        "--patience",
        type=int,
        help="stop a phase when the validation loss has not improved for this many epochs (default 10)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--allow-missing-classes",
        action="store_true",
        help="train even when a class folder has no usable training photos (that class is left out)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--fresh", action="store_true", help="clear the earlier run in --out first (only the workbook's own files)"
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="plain Keras recipe: run the frozen base in every step (slow; for comparison)",
    )
    p.add_argument(
        "--no-imagenet-prior",
        action="store_true",
        help="save the head alone: by default, with ImageNet weights and classes ImageNet knows (lion, tiger, bear), "
        "the model multiplies its probabilities by the ImageNet classifier's (notebook 05)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        help=f"keep bottleneck activations on disk for the next run (default: ${CACHE_ENV}, else in memory only)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="speed benchmark: cached vs plain training, pipeline, memory (ratios)")
    p.add_argument("--data", type=Path, help=photos)
    p.add_argument("--backbone")
    p.add_argument("--weights", type=_weights, default=_UNSET, help="imagenet (default) | PATH | none")
    p.add_argument(
        "--image-size",
        type=int,
        help="default: the backbone's own size; below its smallest input, or too big for memory: refused",
    )
    p.add_argument("--images", type=int, help="training photos to time (split evenly by class)")
    p.add_argument("--epochs", help="head-training epochs to compare, e.g. 10,20")
    p.add_argument("--max-cached-epochs", type=int)
    p.add_argument("--fine-tune-blocks", type=int, help="K: fine-tune the top K blocks")
    p.add_argument("--json", type=Path, help="also write every number to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check-data", help="report usable, fixed and skipped photos in a folder (reads only)")
    p.add_argument("data", nargs="?", type=Path, help=photos)
    p.add_argument("--min-side", type=int, help=f"skip photos whose shorter side is below this (default {MIN_SIDE})")
    p.add_argument("--val-fraction", type=float, help=f"for DIR/<class>/ folders (default {VAL_FRACTION})")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-listed", type=int, default=None, help="list at most N files per section")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("notebooks", help="execute every notebook headless with papermill")
    p.add_argument("--quick", action="store_true", help="small images, few photos and epochs (CI)")
    p.add_argument("--backbone", help="override BACKBONE in every notebook that has it")
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="override a parameter (a Python literal or a string) where a notebook declares it",
    )
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 00 03)")
    p.add_argument("--notebooks-dir", type=Path, help="where the notebooks are (default: notebooks/)")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800,
        metavar="SECONDS",
        help="fail a notebook whose cell runs longer than this, then go on with the next (default 1800)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for the executed notebooks, notebooks.json and passes.jsonl; the HTML book goes to DIR/book",
    )
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("book", help="render executed notebooks as a static HTML book (no server needed)")
    p.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the --out folder of `python -m helpers notebooks` (its notebooks.json and executed notebooks)",
    )
    p.add_argument("--out", type=Path, help="folder for the book (default: DIR/book); rebuilt whole, atomically")
    p.set_defaults(func=cmd_book)

    p = sub.add_parser("clean-notebooks", help="strip outputs (except NBVAL_CHECK_OUTPUT cells) from notebooks")
    p.add_argument("paths", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    p.add_argument("--check", action="store_true", help="only report notebooks that are not clean (exit 1)")
    p.add_argument(
        "--outputs-from",
        type=Path,
        metavar="DIR",
        help="first copy the checked cells' outputs from executed notebooks in DIR",
    )
    p.set_defaults(func=cmd_clean_notebooks)

    p = sub.add_parser("sync-lesson", help="write helpers/model/lesson.py from the notebooks' #@save cells")
    p.add_argument("--check", action="store_true", help="only compare (exit 1 if they differ)")
    p.set_defaults(func=cmd_sync_lesson)

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a saved model")
    p.add_argument("--model", type=Path, required=True, help="a model.keras file")
    p.add_argument("--data", type=Path, help=photos)
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="for folders with split folders (default: val); a folder without them is scored whole",
    )
    p.add_argument("--out", type=Path, help="folder for evaluation.json (default: beside the model)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify photos with a saved model (top classes and probabilities)")
    p.add_argument("--model", type=Path, required=True, help="a model.keras file")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("images", nargs="+", type=Path)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("gpu-check", help="find the backend's GPU and measure InceptionV3 on it (one JSON line)")
    p.add_argument("--allow-cpu", action="store_true", help="no GPU: measure on the CPU (small) instead of failing")
    p.add_argument("--image-size", type=int, help="photo side (GPU default 299, CPU 75)")
    p.add_argument("--images", type=int, help="synthetic photos (GPU default 512, CPU 16)")
    p.add_argument("--batch-size", type=int, help="GPU default 64, CPU 8")
    p.add_argument("--epochs", type=int, help="head epochs, cached and plain (GPU default 3, CPU 2)")
    p.add_argument(
        "--precision",
        help="Keras dtype policy (default: mixed_bfloat16 on JAX, mixed_float16 on other GPUs, float32 on the CPU)",
    )
    p.add_argument("--blocks", type=int, default=2, help="top blocks to fine-tune (default 2)")
    p.set_defaults(func=cmd_gpu_check)

    p = sub.add_parser("cache", help="list or clear the bottleneck cache (where it lives, how big it is)")
    p.add_argument("--cache-dir", type=Path, help=f"the cache root (default: ${CACHE_ENV}, else ~/.cache/…)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="folders, sizes, entries, model/cut/size of each (default)")
    what.add_argument("--clear", action="store_true", help="delete the cache folders under the root (nothing else)")
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every expected failure is one line on stderr and an exit code, never a traceback.

    2: a usage or input mistake (the line says what to pass instead); 1: the work failed
    (a file system error names the path); 130: interrupted (Ctrl-C).
    """
    args = build_parser().parse_args(argv)
    try:
        with _HELD:
            return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-written was kept (files are written whole or not at all)", file=sys.stderr)
        return 130
    except (UsageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}" if exc.errno is None else f"error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, permissions, …: one line naming the path
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. WeightsUnavailableError: its message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _os_error(exc: OSError) -> str:
    from helpers.files import describe_os_error

    return describe_os_error(exc)


if __name__ == "__main__":
    sys.exit(main())
