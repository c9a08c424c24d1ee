"""How much the data check costs, next to what training spends decoding the same photos anyway.

    WORKBOOK_DATA=../shared/data/lion-tiger-bear python benchmarks/bench_data.py [DIR] [--size 224]

Prints, measured in one run on the same folder: listing names only (``check=False``), the
full check (``check_data``: header, reduced-scale decode, fingerprints, duplicates), and
decoding every photo at training size (``load_images``), with the ratios between them.
The target: the full check costs less than decoding the photos once for training.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.data.folders import check_data, load_folder, load_images  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=os.environ.get("WORKBOOK_DATA"))
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    if not args.data:
        print("skip: pass a photo folder or set WORKBOOK_DATA")
        return 0
    _, names_s = timed(lambda: load_folder(args.data, check=False))
    report, check_s = timed(lambda: check_data(args.data))
    folder = load_folder(args.data)
    paths = folder.train.paths + folder.val.paths + (folder.test.paths if folder.test else [])
    _, decode_s = timed(lambda: load_images(paths, args.size))
    n = len(report.valid)
    print(
        f"{n} valid photos in {len(report.class_names)} classes, {len(report.skipped)} skipped, "
        f"{len(report.fixed)} fixed ({args.data})"
    )
    print(f"names only (check=False)      {names_s:7.2f} s")
    print(f"full check (check_data)       {check_s:7.2f} s   {1000 * check_s / max(n, 1):.2f} ms/photo")
    print(f"decode all at {args.size:3d} px (train)  {decode_s:7.2f} s")
    print(f"ratio check / decode          {check_s / decode_s:7.2f}   (target < 1)")
    print(f"ratio check / names only      {check_s / max(names_s, 1e-9):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
