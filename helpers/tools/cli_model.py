"""The command line's commands around a model: ``bench``, ``gpu-check``, ``evaluate``, ``predict``, ``cache``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from helpers import files
from helpers.data.checks import display_name
from helpers.run.evaluate import EVALUATION_FILE, evaluate_model, open_model, predict_files
from helpers.ship.export import class_names_for
from helpers.store.cache import BottleneckCache, list_caches
from helpers.tools import bench, gpu_check
from helpers.tools.cli_checks import bench_config
from helpers.tools.cli_common import photo_folder, warn


def cmd_cache(args: argparse.Namespace) -> int:
    store = BottleneckCache(args.cache_dir)
    if args.clear:
        freed = store.clear()
        print(f"cleared the bottleneck cache at {store.root} ({files.human_size(freed)} freed)")
    else:
        print(list_caches(store.root))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    config = bench_config(args)  # checked already (helpers.tools.cli_checks.check_bench)
    result = bench.run(dataclasses.replace(config, data_dir=photo_folder(args.data)))
    if args.json:
        print(f"wrote {bench.write(result, args.json)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:  # checked already (helpers.tools.cli_checks.check_evaluate)
    out = args.out or args.model.parent
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


def cmd_predict(args: argparse.Namespace) -> int:  # checked already (helpers.tools.cli_checks.check_predict)
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
        shown = display_name(result.path)  # a name that is not valid UTF-8 is printed with escapes, never fails
        print(f"{shown}: " + ", ".join(f"{name} {p:.3f}" for name, p in result.top), flush=True)
    return 1 if failed else 0


def cmd_gpu_check(args: argparse.Namespace) -> int:  # checked already (helpers.tools.cli_checks.check_gpu_check)
    return gpu_check.main(
        allow_cpu=args.allow_cpu,
        image_size=args.image_size,
        images=args.images,
        batch_size=args.batch_size,
        epochs=args.epochs,
        precision=args.precision,
        blocks=args.blocks,
    )
