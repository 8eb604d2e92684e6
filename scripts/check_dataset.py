#!/usr/bin/env python
"""Check a local copy of NYUv2 or CelebA before training on it.

    python scripts/check_dataset.py nyuv2 ROOT [--image-size 288 384] [--limit N]
    python scripts/check_dataset.py celeba ROOT [--limit N | --all-images]

Reports file counts, shapes, dtypes, value and label ranges and invalid-pixel fractions, using the
loaders' own validation code (mtl_bench.data.nyuv2 / mtl_bench.data.celeba), then lists every
problem found. Exit code 0 when the copy is usable, 1 when something is wrong.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mtl_bench.data import DatasetNotFoundError  # noqa: E402


def check_nyuv2(root: str, image_size=(288, 384), limit: int | None = None) -> tuple[list[str], list[str]]:
    from mtl_bench.data import nyuv2

    root = nyuv2.resolve_root(root)
    problems, notes = [], []
    print(f"NYUv2 at {root}")
    for folder in ("train", "val"):
        n, found = nyuv2.scan_split(root, folder)
        problems += found
        print(f"  {folder}: {n} samples (standard copy: {nyuv2.STANDARD_COUNTS[folder]})")
        if n != nyuv2.STANDARD_COUNTS[folder]:
            notes.append(f"{folder} has {n} samples, the standard copy {nyuv2.STANDARD_COUNTS[folder]}")
        if found or n == 0:
            continue
        count = n if limit is None else min(n, limit)
        stats, classes, dtypes = [], set(), set()
        for i in range(count):
            where = f"{folder}/*/{i}.npy "
            try:
                arrays = nyuv2.load_sample(root, folder, i)
            except (OSError, ValueError) as err:
                problems.append(f"{where}cannot be read: {err}")
                continue
            dtypes.add(tuple(str(a.dtype) for a in arrays))
            shape_problems = nyuv2.check_arrays(*arrays, image_size=image_size, where=where)
            problems += shape_problems
            if shape_problems:
                continue
            value_problems, s = nyuv2.check_values(*arrays, where=where)
            problems += value_problems
            stats.append(s)
            classes.update(np.unique(arrays[1]).astype(int).tolist())
        if not stats:
            continue
        mean = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
        print(f"    checked {count} samples; dtypes (image, label, depth, normal): {sorted(dtypes)}")
        print(f"    image range {min(s['image_min'] for s in stats):.3f}..{max(s['image_max'] for s in stats):.3f}; "
              f"label values {sorted(classes)}")
        print(f"    unlabelled pixels {100 * mean['label_ignored']:.1f}%; invalid depth {100 * mean['depth_invalid']:.1f}%; "
              f"invalid normals {100 * mean['normal_invalid']:.1f}%; max depth {max(s['depth_max'] for s in stats):.2f} m")
        if max(s["image_max"] for s in stats) > 1.0 + 1e-6 or min(s["image_min"] for s in stats) < -1e-6:
            notes.append(f"{folder} images are outside 0..1 (the MTAN copy is scaled to 0..1)")
    return problems, notes


def check_celeba(root: str, limit: int | None = 500) -> tuple[list[str], list[str]]:
    from PIL import Image

    from mtl_bench.data import celeba

    problems, notes = [], []
    try:
        ann = celeba.read_annotations(root)
    except DatasetNotFoundError as err:
        return [str(err)], notes
    print(f"CelebA at {root} ({ann['layout']} layout)")
    print(f"  {ann['attr']}: {len(ann['names'])} images x {len(celeba.ATTRIBUTES)} attributes")
    for split, code in celeba.SPLIT_CODES.items():
        n = int((ann["split"] == code).sum())
        print(f"  {split}: {n} images (standard: {celeba.STANDARD_COUNTS[split]})")
        if n != celeba.STANDARD_COUNTS[split]:
            notes.append(f"{split} has {n} images, the standard split {celeba.STANDARD_COUNTS[split]}")
    rates = ann["labels"].mean(axis=0) if len(ann["names"]) else np.zeros(len(celeba.ATTRIBUTES))
    print(f"  positive rate per attribute: min {rates.min():.3f} ({celeba.ATTRIBUTES[int(rates.argmin())]}), "
          f"max {rates.max():.3f} ({celeba.ATTRIBUTES[int(rates.argmax())]})")
    missing = celeba.check_images_present(ann["images"], ann["names"])
    if missing:
        problems.append(f"{len(missing)} image(s) listed in {ann['attr']} are missing from {ann['images']} "
                        f"(e.g. {', '.join(missing[:3])})")
    missing_set = set(missing)
    present = [n for n in ann["names"] if n not in missing_set]
    step = max(1, len(present) // limit) if limit else 1
    sample = present[::step][: limit or None]
    sizes = {}
    for name in sample:
        try:
            with Image.open(ann["images"] / name) as img:
                img.load()
                sizes[img.size] = sizes.get(img.size, 0) + 1
        except OSError as err:
            problems.append(f"{ann['images'] / name} cannot be decoded: {err}")
    print(f"  decoded {len(sample)} images: sizes {dict(sorted(sizes.items(), key=lambda kv: -kv[1]))}")
    if sizes and set(sizes) != {(178, 218)}:
        notes.append("some images are not 178 x 218: the aligned-and-cropped images (img_align_celeba) are expected")
    return problems, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["nyuv2", "celeba"])
    parser.add_argument("root")
    parser.add_argument("--image-size", type=int, nargs=2, default=[288, 384], metavar=("H", "W"),
                        help="NYUv2: the H W every file must have (dataset.image_size)")
    parser.add_argument("--limit", type=int, default=None,
                        help="check at most N samples per split (NYUv2: default all; CelebA: default 500 decoded images)")
    parser.add_argument("--all-images", action="store_true", help="CelebA: decode every image")
    args = parser.parse_args(argv)
    if args.dataset == "nyuv2":
        problems, notes = check_nyuv2(args.root, tuple(args.image_size), args.limit)
    else:
        problems, notes = check_celeba(args.root, None if args.all_images else (args.limit or 500))
    for note in notes:
        print(f"note: {note}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems[:50]:
            print(f"  - {p}")
        if len(problems) > 50:
            print(f"  ... and {len(problems) - 50} more")
        if args.dataset == "nyuv2":
            from mtl_bench.data.nyuv2 import LAYOUT
        else:
            from mtl_bench.data.celeba import LAYOUT
        if not any(LAYOUT in p for p in problems):
            print(f"\n{LAYOUT}")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
