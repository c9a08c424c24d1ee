"""Peak memory of ``helpers train`` on 300 vs 3,000 photos: does it depend on the photo count?

    python benchmarks/bench_memory.py --data ../shared/data/lion-tiger-bear \\
        --weights ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5

Builds two photo folders (``train/<class>``, ``val/<class>``, 80/20) in a temporary
folder from the photos in ``--data``. To reach more photos than there are, each real photo
is written again as variants — mirrored and/or cropped by a few percent, re-encoded at
another JPEG quality — so every file has distinct bytes AND distinct pixels (the
activation cache keys photos by a hash of their content). Variants of a training photo
stay in train/, of a validation photo in val/ (no leakage between splits). Both folders
are built the same way, so a photo costs the same to decode in each.

Then runs ``python -m helpers train … --backbone mobilenet_v2 --cache-dir FRESH`` once
per folder, each in a fresh child process, and reads that child's peak resident memory
from ``os.wait4`` (the kernel's ``ru_maxrss`` for that one child, not a maximum over every
child so far). Prints both peaks, the ratio large/small, the target (1.3), wall seconds,
and met / not met; the same again with ``--no-cache`` (the plain recipe) unless
``--skip-no-cache``. Exit code 1 if a target is not met.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSES_SPLITS = ("train", "val")
VAL_SHARE = 0.2
TARGET = 1.3


def _real_photos(data: Path) -> dict[tuple[str, str], list[Path]]:
    """``{(split, class): [photos]}`` from DATA/{train,val}/<class>/ (or DATA/<class>/, split by index)."""
    out: dict[tuple[str, str], list[Path]] = {}
    if (data / "train").is_dir():
        for split in CLASSES_SPLITS:
            for class_dir in sorted(p for p in (data / split).iterdir() if p.is_dir()):
                out[(split, class_dir.name)] = sorted(
                    p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                )
    else:
        for class_dir in sorted(p for p in data.iterdir() if p.is_dir()):
            photos = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            n_val = max(1, round(len(photos) * VAL_SHARE))
            out[("train", class_dir.name)], out[("val", class_dir.name)] = photos[n_val:], photos[:n_val]
    return out


def _variant(image, k: int):
    """Variant ``k`` of a photo (0: itself): mirrored on odd k, cropped by 3 % more every two steps."""
    from PIL import ImageOps

    if k % 2:
        image = ImageOps.mirror(image)
    crop = 0.03 * (k // 2)
    if crop:
        w, h = image.size
        dx, dy = round(w * crop / 2), round(h * crop / 2)
        image = image.crop((dx, dy, w - dx, h - dy))
    return image


def build_folder(real: dict[tuple[str, str], list[Path]], total: int, dest: Path) -> dict:
    """Write ``total`` distinct photos (split 80/20, classes equal) under ``dest``; return counts."""
    from PIL import Image

    classes = sorted({c for _, c in real})
    per_class = total // len(classes)
    n_val = round(per_class * VAL_SHARE)
    counts = {}
    for class_name in classes:
        for split, n in (("train", per_class - n_val), ("val", n_val)):
            sources = real[(split, class_name)]
            folder = dest / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                k, source = divmod(i, len(sources))
                with Image.open(sources[source]) as image:
                    picture = _variant(image.convert("RGB"), k)
                    picture.save(folder / f"{sources[source].stem}_v{k}.jpg", quality=90 - (k % 7))
            counts[f"{split}/{class_name}"] = n
    return counts


def run_train(data: Path, args, out: Path, cache_dir: Path | None, log: Path) -> dict:
    """One ``helpers train`` in a fresh child process: its peak RSS (MiB), wall seconds, exit code."""
    command = [
        sys.executable,
        "-m",
        "helpers",
        "train",
        "--data",
        str(data),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(args.weights),
        "--image-size",
        str(args.image_size),
        "--epochs",
        str(args.epochs),
        "--out",
        str(out),
    ]
    command += ["--cache-dir", str(cache_dir)] if cache_dir is not None else ["--no-cache"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("WORKBOOK_CACHE", None)
    start = time.perf_counter()
    with open(log, "w") as fh:
        child = subprocess.Popen(command, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    peak = usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return {
        "peak_rss_mib": round(peak, 1),
        "seconds": round(seconds, 1),
        "exit_code": child.returncode,
        "log": str(log),
        "last_lines": tail,
    }


def compare(name: str, small: dict, large: dict, args) -> dict:
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    ok = ratio <= TARGET and small["exit_code"] == 0 and large["exit_code"] == 0
    print(f"\n{name}")
    for n, r in ((args.small, small), (args.large, large)):
        print(
            f"  {n:6d} photos  peak RSS {r['peak_rss_mib']:8.1f} MiB   wall {r['seconds']:7.1f} s"
            f"   exit {r['exit_code']}"
        )
        if r["exit_code"] != 0:
            print("    " + "\n    ".join(r["last_lines"]) + f"\n    (full log: {r['log']})")
    print(f"  ratio large/small {ratio:.3f}   target <= {TARGET}   {'MET' if ok else 'NOT MET'}")
    return {"small": small, "large": large, "ratio": round(ratio, 4), "target": TARGET, "met": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=os.environ.get("WORKBOOK_DATA"),
        help="real photos: DIR/{train,val}/<class>/ or DIR/<class>/",
    )
    parser.add_argument("--weights", type=Path, required=True, help="MobileNetV2 no-top .h5 weights")
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-no-cache", action="store_true", help="measure only the cached recipe")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (photos, logs)")
    parser.add_argument("--json", type=Path, help="also write every number to this JSON file")
    args = parser.parse_args()
    if not args.data or not Path(args.data).is_dir():
        parser.error("--data: pass the folder of real photos (or set WORKBOOK_DATA)")
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    result = {
        "backbone": "mobilenet_v2",
        "image_size": args.image_size,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
        "recipes": {},
    }
    try:
        real = _real_photos(Path(args.data))
        folders = {}
        for label, n in (("small", args.small), ("large", args.large)):
            start = time.perf_counter()
            folders[label] = work / f"photos_{n}"
            counts = build_folder(real, n, folders[label])
            print(
                f"built {sum(counts.values())} photos in {folders[label]} ({time.perf_counter() - start:.1f} s): "
                + ", ".join(f"{k} {v}" for k, v in counts.items()),
                flush=True,
            )
        recipes = [("cached (default)", True)] + ([] if args.skip_no_cache else [("plain recipe (--no-cache)", False)])
        for name, cached in recipes:
            runs = {}
            for label in ("small", "large"):
                tag = f"{'cache' if cached else 'nocache'}_{label}"
                cache_dir = work / f"cache_{tag}" if cached else None  # fresh: every activation is computed
                runs[label] = run_train(folders[label], args, work / f"out_{tag}", cache_dir, work / f"{tag}.log")
                print(
                    f"  {name}, {label}: {runs[label]['peak_rss_mib']:.1f} MiB, {runs[label]['seconds']:.1f} s",
                    flush=True,
                )
            result["recipes"][name] = compare(name, runs["small"], runs["large"], args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0 if all(r["met"] for r in result["recipes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
