"""``python -m helpers train``: one :class:`helpers.run.config.RunConfig` from the options, then the run.

The configuration is resolved once (the backbone's own size, the cache folder) and everything
is written from it: ``run.json`` (:meth:`~helpers.run.config.RunConfig.record`), the checks before
the work starts, and, through :func:`helpers.run.train.train_classifier`, ``metrics.json``. Every check
(the options, the photo size, ``--out``, the run lock, the photos) comes before Keras is imported, so a
refusal takes a fraction of a second, not the seconds the deep-learning libraries take to load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import helpers
from helpers import files
from helpers.data.checks import display_name
from helpers.data.folders import survey_folder
from helpers.model.specs import get_spec
from helpers.run import runs
from helpers.run.config import RunConfig
from helpers.tools.cli_common import HELD, UNSET, UsageError, at_least, given, photo_folder, warn

#: RunConfig's fields that are not a same-named command-line option.
NOT_OPTIONS = {"data", "weights", "cache", "imagenet_prior"}


def check_image_size(backbone: str, image_size: int | None, batch_size: int) -> None:
    """Refuse, before any work, a photo size the backbone cannot take or that would not fit in memory."""
    spec = get_spec(backbone)
    problem = runs.image_size_problem(
        spec.name, spec.default_size if image_size is None else image_size, spec.min_size, batch_size
    )
    if problem:
        raise UsageError(problem)


def print_data_warnings(report, limit: int = 10) -> None:
    """What check-data knows about the photos, before the work starts: warnings, then skipped files."""
    for path, why in report.ignored:  # the workbook's own folders inside the photo folder: said once
        if why.startswith(("the workbook's", "the notebook runner's", "the --out folder", "the activation cache")):
            print(f"note: skipped {display_name(path, report.root)}: {why}", file=sys.stderr, flush=True)
    for line in report.warnings:
        warn(line)
    skipped = report.skipped
    for f in skipped[:limit]:
        warn(f"skipped {display_name(f.path, report.root)}: {'; '.join(f.reasons)}")
    if len(skipped) > limit:
        warn(
            f"… and {len(skipped) - limit} more skipped files (python -m helpers check-data {report.root} "
            "lists them all)"
        )


def config_from(args: argparse.Namespace) -> RunConfig:
    """The run the options describe (defaults: :class:`RunConfig`'s own), checked before any photo is read."""
    if args.epochs is not None and args.epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, got {args.epochs}")
    at_least("--per-class", args.per_class, 1)
    at_least("--batch-size", args.batch_size, 1)
    at_least("--fine-tune-epochs", args.fine_tune_epochs, 0)
    at_least("--patience", args.patience, 0)
    at_least("--seed", args.seed, 0)
    if args.seed is not None and args.seed >= 2**32:
        raise UsageError(f"--seed must be below 2**32 = {2**32} (Keras' random seed), got {args.seed}")
    names = {f.name for f in dataclasses.fields(RunConfig)} - NOT_OPTIONS
    options = given(args, *sorted(names & vars(args).keys()))
    if args.weights is not UNSET:
        options["weights"] = args.weights
    config = RunConfig(args.data, cache=not args.no_cache, imagenet_prior=not args.no_imagenet_prior, **options)
    check_image_size(config.backbone, config.image_size, config.batch_size)
    return dataclasses.replace(config, data=photo_folder(args.data)).resolved()


def _check_photos(args: argparse.Namespace, config: RunConfig) -> None:
    """Survey the photo folder (the run's own folders inside it left out): warnings, and refusals."""
    own = {args.out: "the --out folder of this run, not photos"}
    if config.cache:
        own[config.cache_dir] = "the activation cache of this run (--cache-dir), not photos"
    report = survey_folder(config.data, seed=config.seed, own_folders=own)
    print_data_warnings(report)
    if report.errors:
        raise ValueError(report.errors[0])
    if report.dropped and not args.allow_missing_classes:
        name, why = next(iter(report.dropped.items()))
        more = f" (and {len(report.dropped) - 1} more classes)" if len(report.dropped) > 1 else ""
        raise UsageError(
            f"class '{name}' {why}{more}: not training without it; fix the folder, or pass "
            f"--allow-missing-classes to train on the other {len(report.class_names)} classes"
        )


def _print_result(out: Path, metrics: dict) -> None:
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
    print(f"wrote {out / 'model.keras'} and {out / 'metrics.json'}")


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from(args)
    # every place we will write is checked before the expensive work starts
    files.check_output_dir(args.out, runs.estimate_bytes(config.backbone, config.weights), "--out folder")
    if config.cache:
        files.check_output_dir(config.cache_dir, 0, "cache folder")
    record = config.record()  # before the lock: its file in --out must not count among the photos of a first run
    HELD.enter_context(runs.lock(args.out, fresh=args.fresh))  # one live run per --out, until main returns
    print(runs.prepare(args.out, record, fresh=args.fresh), flush=True)
    if config.epochs == 0:
        print(
            "--epochs 0: no head training; the saved model keeps the new head's random initial weights"
            + (" (fine-tuning still runs)" if config.fine_tunes else ""),
            flush=True,
        )
    try:
        _check_photos(args, config)
        helpers.start()  # Keras loads here, once every check above has passed: a refusal never waits for it
        from helpers.run import device, train  # noqa: PLC0415 - they import Keras: only after the checks

        device.configure()  # a GPU gets mixed precision, XLA and every GPU; a CPU runs as it is
        metrics = train.train_classifier(config, args.out)
    except KeyboardInterrupt:
        runs.finish(args.out, "interrupted")
        raise
    except BaseException as exc:
        runs.finish(args.out, "failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        raise
    runs.finish(args.out, "complete", val_accuracy=metrics["val_accuracy"])
    _print_result(Path(args.out), metrics)
    return 0
