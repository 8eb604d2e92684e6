"""Writers of tiny NYUv2 and CelebA copies in exactly their standard on-disk layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mtl_bench.data.celeba import ATTRIBUTES


def write_nyuv2(root: Path, n_train: int = 4, n_val: int = 2, size=(32, 64), seed: int = 0) -> Path:
    """MTAN's layout: root/{train,val}/{image,label,depth,normal}/{i}.npy, float32 arrays,
    channels last: image HxWx3 in [0,1], label HxW in {-1, 0..12}, depth HxWx1 (0 = invalid),
    normal HxWx3 unit vectors (all-zero = invalid)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for folder, n in (("train", n_train), ("val", n_val)):
        for sub in ("image", "label", "depth", "normal"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = rng.random((h, w, 3), dtype=np.float32)
            label = rng.integers(0, 13, size=(h, w)).astype(np.float32)
            label[rng.random((h, w)) < 0.1] = -1
            depth = rng.uniform(0.5, 9.0, size=(h, w, 1)).astype(np.float32)
            depth[rng.random((h, w)) < 0.1] = 0
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[rng.random((h, w)) < 0.1] = 0
            for sub, arr in (("image", image), ("label", label), ("depth", depth), ("normal", normal)):
                np.save(root / folder / sub / f"{i}.npy", arr)
    return root


def write_celeba(root: Path, layout: str = "torchvision", counts=(6, 3, 3), seed: int = 0,
                 image_size=(178, 218)) -> Path:
    """``layout="torchvision"``: root/celeba/{img_align_celeba/, list_attr_celeba.txt,
    list_eval_partition.txt}; ``layout="anno"``: root/{Img/img_align_celeba/, Anno/..., Eval/...}.
    Real JPEGs; the text files in the official formats (count line, header line, -1/1 values)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    if layout == "torchvision":
        attr_path = root / "celeba" / "list_attr_celeba.txt"
        part_path = root / "celeba" / "list_eval_partition.txt"
        image_dir = root / "celeba" / "img_align_celeba"
    elif layout == "anno":
        attr_path = root / "Anno" / "list_attr_celeba.txt"
        part_path = root / "Eval" / "list_eval_partition.txt"
        image_dir = root / "Img" / "img_align_celeba"
    else:
        raise ValueError(layout)
    for p in (attr_path.parent, part_path.parent, image_dir):
        p.mkdir(parents=True, exist_ok=True)
    n = sum(counts)
    splits = np.repeat([0, 1, 2], counts)
    labels = rng.choice([-1, 1], size=(n, len(ATTRIBUTES)))
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    w, h = image_size
    for name, row in zip(names, labels):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        pixels[: h // 4] = 255 if row[ATTRIBUTES.index("Smiling")] == 1 else 0
        Image.fromarray(pixels).save(image_dir / name, quality=90)
    with open(attr_path, "w") as f:
        f.write(f"{n}\n")
        f.write(" ".join(ATTRIBUTES) + " \n")
        for name, row in zip(names, labels):
            f.write(name + " " + " ".join(f"{v:2d}" for v in row) + "\n")
    with open(part_path, "w") as f:
        for name, split in zip(names, splits):
            f.write(f"{name} {split}\n")
    return root
