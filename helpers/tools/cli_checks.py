"""The refusals of the commands that need Keras (``bench``, ``gpu-check``, ``evaluate``, ``predict``), run first.

:func:`helpers.tools.cli.main` runs a command's ``before_keras`` (named in the parser table) before it starts Keras, so
a refusal takes a fraction of a second, not the seconds Keras and TensorFlow take to import (as ``train``'s).
No Keras here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers import files
from helpers.data.checks import not_a_file_reason
from helpers.run.config import GPU_CHECK_CPU_SIZES, BenchConfig
from helpers.tools.cli_common import UNSET, UsageError, at_least, check_photo_folder, given
from helpers.tools.cli_train import check_image_size


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """The benchmark the options describe (defaults: :class:`BenchConfig`'s own)."""
    options = given(args, "backbone", "image_size", "images", "max_cached_epochs", "fine_tune_blocks")
    if args.weights is not UNSET:
        options["weights"] = args.weights
    if args.epochs is not None:
        options["epochs"] = _epochs(args.epochs)
    return BenchConfig(args.data, **options)


def _epochs(text: str) -> tuple[int, ...]:
    """``--epochs 10,20``: the head-training epochs to compare, each a whole number of at least 1."""
    parts = [e.strip() for e in str(text).split(",") if e.strip()]
    if not parts or not all(e.isdigit() and int(e) >= 1 for e in parts):
        raise UsageError(f"--epochs takes whole numbers of at least 1, separated by commas (e.g. 10,20); got {text!r}")
    return tuple(int(e) for e in parts)


def check_bench(args: argparse.Namespace) -> None:
    config = bench_config(args)
    for option in ("images", "max_cached_epochs", "fine_tune_blocks"):
        at_least("--" + option.replace("_", "-"), getattr(args, option), 1)
    check_image_size(config.backbone, config.image_size, config.batch_size)
    check_photo_folder(args.data)


def check_gpu_check(args: argparse.Namespace) -> None:
    for option in ("images", "batch_size", "epochs", "blocks"):
        at_least("--" + option.replace("_", "-"), getattr(args, option), 1)
    if args.image_size is not None:  # InceptionV3; the batch as on the CPU unless given
        check_image_size("inception_v3", args.image_size, args.batch_size or GPU_CHECK_CPU_SIZES["batch_size"])


def _model_file(path: Path) -> None:
    """Refuse what ``load_model`` would refuse (:func:`helpers.files.check_model_file`), and first a path that is
    not a regular file (a FIFO would hang the read)."""
    odd = not_a_file_reason(path)
    if odd and odd != "no such file":
        raise FileNotFoundError(f"model file {path}: {odd}; pass a model.keras file")
    files.check_model_file(path)


def check_predict(args: argparse.Namespace) -> None:
    at_least("--top", args.top, 1)
    _model_file(args.model)


def check_evaluate(args: argparse.Namespace) -> None:
    _model_file(args.model)
    check_photo_folder(args.data)
    out = args.out or args.model.parent
    files.check_output_dir(out, 256 << 10, "--out folder" if args.out else "the model's folder")
