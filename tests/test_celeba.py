"""CelebA: both on-disk layouts with real JPEGs and the official text formats, caching, models,
errors, CLI runs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import only_run_dir, read_jsonl
from fixtures_data import write_celeba
from mtl_bench.data import DatasetNotFoundError, build_benchmark
from mtl_bench.data.celeba import ATTRIBUTES, load_image
from mtl_bench.models import build_model


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory) -> Path:
    return write_celeba(tmp_path_factory.mktemp("celeba"), layout="torchvision")


def dataset_cfg(root, **over):
    base = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "dataset" / "celeba.yaml")
    base.pop("defaults")
    return OmegaConf.merge(base, {"root": str(root), "num_workers": 0}, over)


def written_labels(attr_file: Path) -> dict[str, list[int]]:
    lines = attr_file.read_text().splitlines()
    return {r.split()[0]: [int(v) for v in r.split()[1:]] for r in lines[2:]}


def test_40_official_attribute_names():
    assert len(ATTRIBUTES) == 40 and ATTRIBUTES[0] == "5_o_Clock_Shadow" and ATTRIBUTES[-1] == "Young"


@pytest.mark.parametrize("layout", ["torchvision", "anno"])
def test_both_layouts_splits_and_labels(tmp_path, layout):
    root = write_celeba(tmp_path, layout=layout, counts=(4, 2, 3))
    b = build_benchmark(dataset_cfg(root), batch_size=4, seed=0)
    assert b.task_names == list(ATTRIBUTES)
    assert (b.train.num_examples, b.val.num_examples, b.test.num_examples) == (4, 2, 3)
    attr = root / ("celeba" if layout == "torchvision" else "Anno") / "list_attr_celeba.txt"
    raw = written_labels(attr)
    x, y = next(iter(b.test))  # unshuffled: images 000007..000009
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    for j, name in enumerate(["000007.jpg", "000008.jpg", "000009.jpg"]):
        for k, attribute in enumerate(ATTRIBUTES):
            assert int(y[attribute][j]) == (1 if raw[name][k] == 1 else 0)


def test_root_may_be_the_celeba_folder_itself(celeba_root):
    b = build_benchmark(dataset_cfg(celeba_root / "celeba", tasks=["Smiling"]), batch_size=2, seed=0)
    assert b.task_names == ["Smiling"] and b.info["layout"].startswith("torchvision")


def test_task_subset_and_memory_cache_match_streaming(celeba_root, tmp_path):
    tasks = ["Smiling", "Male", "Young"]
    streamed = build_benchmark(dataset_cfg(celeba_root, tasks=tasks), batch_size=8, seed=0)
    cached = build_benchmark(dataset_cfg(celeba_root, tasks=tasks, cache="memory", cache_dir=str(tmp_path)),
                             batch_size=8, seed=0)
    assert cached.task_names == tasks
    (xs, ys), (xc, yc) = next(iter(streamed.test)), next(iter(cached.test))
    assert torch.equal(xs, xc) and all(torch.equal(ys[t], yc[t]) for t in tasks)
    assert list(tmp_path.glob("celeba_test_64px_*.npy"))
    # the resident images are the PIL-resized JPEGs
    expected = torch.from_numpy(load_image(celeba_root / "celeba" / "img_align_celeba" / "000010.jpg", 64))
    assert torch.equal((xc[0] * 255).round().byte(), expected.permute(2, 0, 1))


def test_sener_koltun_preprocessing_is_their_loaders_input(tmp_path):
    """preprocess=sener_koltun: BGR order, their channel means subtracted, the image stretched to
    0..255 over its own range (scipy.misc.imresize byte-scales a float image), on a hand-made 2 x 2
    image kept at its size; plain leaves the RGB pixels as they are."""
    import numpy as np
    from PIL import Image

    rgb = np.array([[[100, 90, 80], [0, 0, 0]], [[255, 255, 255], [73, 83, 72]]], dtype=np.uint8)
    path = tmp_path / "face.png"
    Image.fromarray(rgb, mode="RGB").save(path)
    assert np.array_equal(load_image(path, 2), rgb)
    out = load_image(path, 2, "sener_koltun")
    # BGR minus (73.158, 82.909, 72.392): the black pixel's G is the minimum (-82.909), the white
    # pixel's R the maximum (182.608); 255 / 265.517 per unit between them
    assert out[0, 1, 1] == 0 and out[1, 0, 2] == 255
    assert (out[0, 0, 0], out[0, 0, 2]) == (86, 106)  # B of (100, 90, 80): 89.751 units; its R: 110.517
    assert out[1, 0, 0] == 254  # the white pixel's B: 264.751 units


def test_preprocessing_is_checked_and_cached_apart(celeba_root, tmp_path):
    cfg = dataset_cfg(celeba_root, tasks=["Smiling"], cache="memory", cache_dir=str(tmp_path),
                      preprocess="sener_koltun")
    theirs = build_benchmark(cfg, batch_size=8, seed=0)
    plain = build_benchmark(dataset_cfg(celeba_root, tasks=["Smiling"]), batch_size=8, seed=0)
    assert list(tmp_path.glob("celeba_test_64px_sener_koltun_*.npy"))
    x_theirs, x_plain = next(iter(theirs.test))[0], next(iter(plain.test))[0]
    assert x_theirs.shape == x_plain.shape and not torch.equal(x_theirs, x_plain)
    expected = torch.from_numpy(load_image(celeba_root / "celeba" / "img_align_celeba" / "000010.jpg", 64,
                                           "sener_koltun"))
    assert torch.equal((x_theirs[0] * 255).round().byte(), expected.permute(2, 0, 1))


def test_models_shapes(celeba_root):
    b = build_benchmark(dataset_cfg(celeba_root, tasks=["Smiling", "Male"]), batch_size=2, seed=0)
    x = torch.rand(2, 3, 64, 64)
    for name, features in (("resnet18_celeba", 2048), ("famo_cnn", 512)):
        model = build_model(OmegaConf.create({"name": name}), b).eval()
        with torch.no_grad():
            z = model.encoder(x)
            out = model(x)
        assert z.shape == (2, features)
        assert set(out) == {"Smiling", "Male"} and out["Male"].shape == (2, 2)
        assert model.last_shared_parameters()


def test_resnet18_has_a_cifar_stem():
    from mtl_bench.models.celeba_nets import CifarResNet18

    enc = CifarResNet18()
    conv = enc.stem[0]
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in enc.modules())


# -------------------------------------------------------------------------------- errors
def test_missing_dataset_names_the_expected_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"(?s)list_attr_celeba\.txt.*Anno.*dataset\.root.*MTL_BENCH_DATA"):
        build_benchmark(dataset_cfg(tmp_path), batch_size=2, seed=0)


def test_missing_attribute_file_is_named(tmp_path):
    root = write_celeba(tmp_path, counts=(2, 1, 1))
    (root / "celeba" / "list_attr_celeba.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"incomplete .*missing .*celeba/list_attr_celeba\.txt"):
        build_benchmark(dataset_cfg(root), batch_size=2, seed=0)


@pytest.mark.parametrize("damage, message", [
    ("header", r"second line should name the 40 attributes"),
    ("count", r"declares 4 images but it has 3 rows"),
    ("value", r"values must be -1 or 1, found \[0\]"),
    ("partition", r"does not list 1 image"),
    ("image", r"1 image\(s\) of the train split are missing .*000002\.jpg"),
])
def test_malformed_copy_is_reported(tmp_path, damage, message):
    root = write_celeba(tmp_path, counts=(2, 1, 1))
    attr = root / "celeba" / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    if damage == "header":
        lines[1] = lines[1].replace("Smiling", "Smile")
    elif damage == "count":
        lines = lines[:-1]
    elif damage == "value":
        lines[2] = lines[2].replace("-1", " 0", 1)
    elif damage == "partition":
        part = root / "celeba" / "list_eval_partition.txt"
        part.write_text("\n".join(part.read_text().splitlines()[:-1]) + "\n")
    elif damage == "image":
        (root / "celeba" / "img_align_celeba" / "000002.jpg").unlink()
    attr.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetNotFoundError, match=message):
        build_benchmark(dataset_cfg(root), batch_size=2, seed=0)


# ------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("strategy", ["ew", "mgda", "dtp"])
def test_cli_run_one_epoch(celeba_root, tmp_path, run_cli, strategy):
    result = run_cli("run", "dataset=celeba", f"dataset.root={celeba_root}", "dataset.num_workers=0", "dataset.image_size=32",
                     f"strategy={strategy}", "trainer.epochs=1", "trainer.batch_size=6", "trainer.device=cpu",
                     "trainer.progress=never", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["identity"]["model"] == "resnet18_celeba"
    assert len(summary["identity"]["tasks"]) == 40
    assert set(summary["final"]["test"]["Smiling"]) == {"error", "accuracy", "f1", "loss"}
    assert summary["selected"]["rule"] == "best" and summary["selected"]["split"] == "val"
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert sum(r["split"] == "test" and r["metric"] == "f1" for r in records) == 40


def test_missing_files_tells_before_loading(celeba_root, tmp_path):
    from mtl_bench.data import missing_files

    assert missing_files(dataset_cfg(celeba_root)) == ""
    assert "CelebA not found under" in missing_files(dataset_cfg(tmp_path / "nowhere"))
