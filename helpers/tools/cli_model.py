"""The command line's commands around a model: ``bench``, ``gpu-check``, ``evaluate``, ``predict``, ``cache``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from helpers import files
from helpers.data.checks import not_a_file_reason
from helpers.run.evaluate import EVALUATION_FILE, evaluate_model, open_model, predict_files
from helpers.ship.export import class_names_for
from helpers.store.cache import BottleneckCache, list_caches
from helpers.tools import bench, gpu_check
from helpers.tools.cli_common import UNSET, given, photo_folder, warn
from helpers.tools.cli_train import check_image_size


def cmd_cache(args: argparse.Namespace) -> int:
    store = BottleneckCache(args.cache_dir)
    if args.clear:
        freed = store.clear()
        print(f"cleared the bottleneck cache at {store.root} ({files.human_size(freed)} freed)")
    else:
        print(list_caches(store.root))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    options = given(args, "backbone", "image_size", "images", "max_cached_epochs", "fine_tune_blocks")
    if args.weights is not UNSET:
        options["weights"] = args.weights
    if args.epochs is not None:
        options["epochs"] = tuple(int(e) for e in str(args.epochs).split(",") if e.strip())
    config = bench.BenchConfig(args.data, **options)
    check_image_size(config.backbone, config.image_size, config.batch_size)
    result = bench.run(dataclasses.replace(config, data_dir=photo_folder(args.data)))
    if args.json:
        print(f"wrote {bench.write(result, args.json)}")
    return 0


def _model_file(path: Path) -> None:
    """Refuse a model path that is not a readable file (a FIFO would hang the read)."""
    odd = not_a_file_reason(path)
    if odd and odd != "no such file":
        raise FileNotFoundError(f"model file {path}: {odd}; pass a model.keras file")


def cmd_evaluate(args: argparse.Namespace) -> int:
    _model_file(args.model)
    if not args.model.is_file():
        raise FileNotFoundError(
            f"model file {args.model} does not exist; train one with "
            "`python -m helpers train --out DIR` (it writes DIR/model.keras)"
        )
    out = args.out or args.model.parent
    files.check_output_dir(out, 256 << 10, "--out folder" if args.out else "the model's folder")
    data = photo_folder(args.data)
    result = evaluate_model(args.model, data, split=args.split, out=out, on_warning=warn)
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
    _model_file(args.model)
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
    if args.image_size is not None:  # InceptionV3; the batch as on the CPU unless given
        check_image_size("inception_v3", args.image_size, args.batch_size or gpu_check.CPU_DEFAULTS["batch_size"])
    return gpu_check.main(
        allow_cpu=args.allow_cpu,
        image_size=args.image_size,
        images=args.images,
        batch_size=args.batch_size,
        epochs=args.epochs,
        precision=args.precision,
        blocks=args.blocks,
    )
