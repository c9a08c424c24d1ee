"""``python -m helpers …``: the workbook's command line (README.md lists the commands).

Each sub-command is a thin wrapper over the helper module that does the work, so what
a notebook teaches and what the command line runs are the same code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import settings


class UsageError(Exception):
    """A command-line mistake: the message says what to pass instead (exit code 2)."""


def _photo_folder(given: Path | None, how: str = "--data DIR") -> Path:
    """The photo folder given on the command line, else ``$WORKBOOK_DATA``."""
    folder = given or settings.data_dir()
    if folder is None:
        raise UsageError(f"no photos: pass {how} or set {settings.DATA_ENV}")
    return folder


def _weights(value: str) -> str | None:
    return None if value.lower() in ("none", "random") else value


def cmd_train(args: argparse.Namespace) -> int:
    from .device import configure
    from .train import train_classifier

    data = _photo_folder(args.data)
    configure()  # a GPU gets mixed precision, XLA and every GPU; a CPU runs as it is
    metrics = train_classifier(data, args.out, backbone=args.backbone, weights=args.weights,
                               per_class=args.per_class, image_size=args.image_size, epochs=args.epochs,
                               fine_tune_from=args.fine_tune_from, fine_tune_epochs=args.fine_tune_epochs,
                               seed=args.seed, batch_size=args.batch_size, verbose=args.verbose,
                               cache=not args.no_cache, cache_dir=args.cache_dir)
    print(f"val_accuracy {metrics['val_accuracy']:.4f}  train_seconds {metrics['train_seconds']:.1f}  "
          f"({metrics['n_train']} training photos, {metrics['backbone']} at {metrics['image_size']}px)")
    print(f"wrote {Path(args.out) / 'model.keras'} and {Path(args.out) / 'metrics.json'}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    data = _photo_folder(args.data)
    epochs = [int(e) for e in str(args.epochs).split(",") if e.strip()]
    result = bench.run(data, backbone=args.backbone, weights=args.weights, image_size=args.image_size,
                       images=args.images, epochs=epochs, max_cached_epochs=args.max_cached_epochs,
                       fine_tune_blocks=args.fine_tune_blocks)
    if args.json:
        print(f"wrote {bench.write(result, args.json)}")
    return 0


def cmd_check_data(args: argparse.Namespace) -> int:
    from .data import check_data
    from .files import write_json

    data = _photo_folder(args.data, "DIR")
    report = check_data(data, val_fraction=args.val_fraction, seed=args.seed, min_side=args.min_side)
    print(report.format(max_listed=args.max_listed))
    if args.json:
        print(f"wrote {write_json(args.json, report.to_dict())}")
    return 0 if report.ok else 1


def cmd_notebooks(args: argparse.Namespace) -> int:
    from .notebooks import NOTEBOOKS_DIR, parse_value, run_notebooks

    parameters = {name: parse_value(value) for name, value in args.parameter or []}
    runs = run_notebooks(args.out, quick=args.quick, backbone=args.backbone, parameters=parameters,
                         only=args.only, notebooks_dir=args.notebooks_dir or NOTEBOOKS_DIR, timeout=args.timeout)
    failed = [run for run in runs if not run.ok]
    for run in failed:
        print(f"FAILED {run.name}: {run.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_clean_notebooks(args: argparse.Namespace) -> int:
    from .notebooks import NOTEBOOKS_DIR, dirty_notebooks, store_checked_outputs

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
    from .evaluate import EVALUATION_FILE, evaluate_model

    data = _photo_folder(args.data)
    result = evaluate_model(args.model, data, split=args.split, out=args.out)
    print(f"accuracy {result.accuracy:.4f} on {len(result.labels)} {args.split} photos of {data}")
    for name, scores in result.per_class().items():
        print(f"  {name:12s} precision {scores['precision']:.3f}  recall {scores['recall']:.3f}  "
              f"({int(scores['support'])} photos)")
    print(f"wrote {(args.out or args.model.parent) / EVALUATION_FILE}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .evaluate import predict_files
    from .export import class_names_for, load_model

    model = load_model(args.model)
    names = class_names_for(args.model)
    if names is None:
        names = [f"class_{i}" for i in range(int(model.output_shape[-1]))]
        print(f"warning: no labels.txt or metrics.json beside {args.model}; showing class numbers",
              file=sys.stderr)
    failed = 0
    for result in predict_files(model, args.images, names, top=args.top):
        if result.error:
            failed += 1
            print(f"error: {result.error}", file=sys.stderr)
            continue
        print(f"{result.path}: " + ", ".join(f"{name} {p:.3f}" for name, p in result.top))
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a Lion/Tiger/Bear (or your own) classifier")
    p.add_argument("--data", type=Path, help="photo folder (default: $WORKBOOK_DATA)")
    p.add_argument("--backbone", default="inception_v3")
    p.add_argument("--weights", type=_weights, default="imagenet", help="imagenet | PATH | none")
    p.add_argument("--per-class", type=int, help="use only N training photos per class")
    p.add_argument("--image-size", type=int, help="default: the backbone's own size")
    p.add_argument("--epochs", type=int, default=30, help="epochs of head training (cheap: on cached features)")
    p.add_argument("--fine-tune-from", help="unfreeze this block and above after head training")
    p.add_argument("--fine-tune-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-cache", action="store_true",
                   help="plain Keras recipe: run the frozen base in every step (slow; for comparison)")
    p.add_argument("--cache-dir", type=Path,
                   help="keep bottleneck activations on disk for the next run (default: $WORKBOOK_CACHE, "
                        "else in memory only)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("bench", help="speed benchmark: cached vs plain training, pipeline, memory (ratios)")
    p.add_argument("--data", type=Path, help="photo folder (default: $WORKBOOK_DATA)")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--weights", type=_weights, default="imagenet", help="imagenet | PATH | none")
    p.add_argument("--image-size", type=int, help="default: the backbone's own size")
    p.add_argument("--images", type=int, default=480, help="training photos to time (split evenly by class)")
    p.add_argument("--epochs", default="10,20", help="head-training epochs to compare, e.g. 10,20")
    p.add_argument("--max-cached-epochs", type=int, default=50)
    p.add_argument("--fine-tune-blocks", type=int, default=2, help="K: fine-tune the top K blocks")
    p.add_argument("--json", type=Path, help="also write every number to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check-data", help="report usable, fixed and skipped photos in a folder (reads only)")
    p.add_argument("data", nargs="?", type=Path, help="photo folder (default: $WORKBOOK_DATA)")
    p.add_argument("--min-side", type=int, default=32, help="skip photos whose shorter side is below this")
    p.add_argument("--val-fraction", type=float, default=0.2, help="for DIR/<class>/ folders")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-listed", type=int, default=None, help="list at most N files per section")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("notebooks", help="execute every notebook headless with papermill")
    p.add_argument("--quick", action="store_true", help="small images, few photos and epochs (CI)")
    p.add_argument("--backbone", help="override BACKBONE in every notebook that has it")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter (a Python literal or a string) where a notebook declares it")
    p.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (e.g. 00 03)")
    p.add_argument("--notebooks-dir", type=Path, help="where the notebooks are (default: notebooks/)")
    p.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                   help="fail a notebook whose cell runs longer than this, then go on with the next (default 1800)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for the executed notebooks, notebooks.json and passes.jsonl")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("clean-notebooks", help="strip outputs (except NBVAL_CHECK_OUTPUT cells) from notebooks")
    p.add_argument("paths", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    p.add_argument("--check", action="store_true", help="only report notebooks that are not clean (exit 1)")
    p.add_argument("--outputs-from", type=Path, metavar="DIR",
                   help="first copy the checked cells' outputs from executed notebooks in DIR")
    p.set_defaults(func=cmd_clean_notebooks)

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a saved model")
    p.add_argument("--model", type=Path, required=True, help="a model.keras file")
    p.add_argument("--data", type=Path, help="photo folder (default: $WORKBOOK_DATA)")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--out", type=Path, help="folder for evaluation.json (default: beside the model)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify photos with a saved model (top classes and probabilities)")
    p.add_argument("--model", type=Path, required=True, help="a model.keras file")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("images", nargs="+", type=Path)
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. WeightsUnavailableError: its message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
