"""``python -m helpers …``: the workbook's command line (README.md lists the commands).

Each sub-command is a thin wrapper over the helper module that does the work, so what
a notebook teaches and what the command line runs are the same code. This module is the
parser table and :func:`main`; the commands are in :mod:`helpers.tools.cli_train` (``train``),
:mod:`helpers.tools.cli_model` (``bench``, ``gpu-check``, ``evaluate``, ``predict``, ``cache``) and
:mod:`helpers.tools.cli_notebooks` (``check-data``, ``notebooks``, ``book``, ``clean-notebooks``,
``sync-lesson``); :func:`main` imports only the one that runs, so a command that trains nothing
never loads what training needs. The commands of :data:`WITHOUT_KERAS` never import Keras
(``train`` starts it itself once its checks have passed); :func:`main` starts Keras before any other,
after the command's ``before_keras`` checks (:mod:`helpers.tools.cli_checks`): a refusal never waits for Keras.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import helpers
from helpers import settings
from helpers.data.checks import MIN_SIDE
from helpers.data.folders import VAL_FRACTION
from helpers.files import describe_os_error
from helpers.tools import cli_checks
from helpers.tools.cli_common import HELD, UNSET, UsageError

#: The command modules that import no Keras: the photo and notebook commands, and ``train``, whose refusals
#: (options, photo size, ``--out``, the run lock, the photos) come before it starts Keras (about 3 s).
WITHOUT_KERAS = ("helpers.tools.cli_notebooks", "helpers.tools.cli_train")


def _weights(value: str) -> str | None:
    return None if value.lower() in ("none", "random") else value


def _block(value: str) -> str | int:
    """``--fine-tune-from``: a block name (``mixed9``) or how many top blocks (``2``)."""
    return int(value) if value.isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    """The command line. Defaults are None here and come from the helpers' own (``helpers.run.config.RunConfig``,
    ``helpers.run.config.BenchConfig``, ``helpers.data.folders.check_data``), so no default is written twice.
    Each command is named ``"module:function"``: :func:`main` imports only the module of the command it runs."""
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    photos = f"photo folder (default: ${settings.DATA_ENV}, else Open Images lion/tiger/bear photos, offline CIFAR-100)"

    p = sub.add_parser("train", help="train a Lion/Tiger/Bear (or your own) classifier")
    p.add_argument("--data", type=Path, help=photos)
    p.add_argument("--backbone", help="default: RunConfig's (inception_v3)")
    p.add_argument("--weights", type=_weights, default=UNSET, help="imagenet (default) | PATH | none")
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
        help=f"where the bottleneck activations are kept on disk for the next run (default: ${settings.CACHE_ENV}, "
        "else ~/.cache/transfer-workbook/bottlenecks)",
    )
    p.set_defaults(func="helpers.tools.cli_train:cmd_train")

    p = sub.add_parser("bench", help="speed benchmark: cached vs plain training, pipeline, memory (ratios)")
    p.add_argument("--data", type=Path, help=photos)
    p.add_argument("--backbone")
    p.add_argument("--weights", type=_weights, default=UNSET, help="imagenet (default) | PATH | none")
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
    p.set_defaults(func="helpers.tools.cli_model:cmd_bench", before_keras=cli_checks.check_bench)

    p = sub.add_parser("check-data", help="report usable, fixed and skipped photos in a folder (reads only)")
    p.add_argument("data", nargs="?", type=Path, help=photos)
    p.add_argument("--min-side", type=int, help=f"skip photos whose shorter side is below this (default {MIN_SIDE})")
    p.add_argument("--val-fraction", type=float, help=f"for DIR/<class>/ folders (default {VAL_FRACTION})")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-listed", type=int, default=None, help="list at most N files per section")
    p.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    p.set_defaults(func="helpers.tools.cli_notebooks:cmd_check_data")

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
    p.set_defaults(func="helpers.tools.cli_notebooks:cmd_notebooks")

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
    p.set_defaults(func="helpers.tools.cli_notebooks:cmd_book")

    p = sub.add_parser("clean-notebooks", help="strip outputs (except NBVAL_CHECK_OUTPUT cells) from notebooks")
    p.add_argument("paths", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    p.add_argument("--check", action="store_true", help="only report notebooks that are not clean (exit 1)")
    p.add_argument(
        "--outputs-from",
        type=Path,
        metavar="DIR",
        help="first copy the checked cells' outputs from executed notebooks in DIR",
    )
    p.set_defaults(func="helpers.tools.cli_notebooks:cmd_clean_notebooks")

    p = sub.add_parser("sync-lesson", help="write helpers/model/lesson.py from the notebooks' #@save cells")
    p.add_argument("--check", action="store_true", help="only compare (exit 1 if they differ)")
    p.set_defaults(func="helpers.tools.cli_notebooks:cmd_sync_lesson")

    p = sub.add_parser("evaluate", help="accuracy, per-class metrics and confusion matrix of a saved model")
    p.add_argument("--model", type=Path, required=True, help="a model.keras file")
    p.add_argument("--data", type=Path, help=photos)
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        help="for folders with split folders (default: val); a folder without them is scored whole",
    )
    p.add_argument("--out", type=Path, help="folder for evaluation.json (default: beside the model)")
    p.set_defaults(func="helpers.tools.cli_model:cmd_evaluate", before_keras=cli_checks.check_evaluate)

    p = sub.add_parser("predict", help="classify photos with a saved model (top classes and probabilities)")
    p.add_argument("--model", type=Path, required=True, help="a model.keras file")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("images", nargs="+", type=Path)
    p.set_defaults(func="helpers.tools.cli_model:cmd_predict", before_keras=cli_checks.check_predict)

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
    p.set_defaults(func="helpers.tools.cli_model:cmd_gpu_check", before_keras=cli_checks.check_gpu_check)

    p = sub.add_parser("cache", help="list or clear the bottleneck cache (where it lives, how big it is)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        help=f"the cache root (default: ${settings.CACHE_ENV}, else ~/.cache/transfer-workbook/bottlenecks)",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="folders, sizes, entries, model/cut/size of each (default)")
    what.add_argument("--clear", action="store_true", help="delete the cache folders under the root (nothing else)")
    p.set_defaults(func="helpers.tools.cli_model:cmd_cache")
    return parser


def _command(name: str):
    """The function a ``"module:function"`` name in the parser table stands for (its module imported now).

    Keras is started first (:func:`helpers.start`) unless the module is one of :data:`WITHOUT_KERAS`.
    """
    module, function = name.split(":")
    if module not in WITHOUT_KERAS:
        helpers.start()
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every expected failure is one line on stderr and an exit code, never a traceback.

    2: a usage or input mistake (the line says what to pass instead); 1: the work failed
    (a file system error names the path); 130: interrupted (Ctrl-C).
    """
    args = build_parser().parse_args(argv)
    try:
        with HELD:
            if hasattr(args, "before_keras"):  # the command's refusals, before Keras starts (cli_checks)
                args.before_keras(args)
            return _command(args.func)(args)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-written was kept (files are written whole or not at all)", file=sys.stderr)
        return 130
    except (UsageError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}" if exc.errno is None else f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, permissions, …: one line naming the path
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # e.g. WeightsUnavailableError: its message says what to do
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
