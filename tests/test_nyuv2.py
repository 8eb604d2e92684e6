"""NYUv2: loader on a tiny copy in MTAN's exact layout, augmentation, models, errors, CLI runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import only_run_dir, read_jsonl
from fixtures_data import write_nyuv2
from mtl_bench.data import DatasetNotFoundError, build_benchmark
from mtl_bench.data.nyuv2 import NYUv2, hflip, scale_crop
from mtl_bench.models import build_model

SIZE = [32, 64]


@pytest.fixture(scope="module")
def nyu_root(tmp_path_factory) -> Path:
    return write_nyuv2(tmp_path_factory.mktemp("nyuv2"), n_train=4, n_val=2, size=tuple(SIZE))


def dataset_cfg(root, **over):
    base = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "dataset" / "nyuv2.yaml")
    base.pop("defaults")
    cfg = OmegaConf.merge(base, {"root": str(root), "image_size": SIZE, "num_workers": 0}, over)
    return cfg


# ---------------------------------------------------------------------------- augmentation
def test_scale_crop_divides_depth_by_the_scale_and_uses_nearest_sampling():
    h = w = 6
    image = torch.arange(3 * h * w, dtype=torch.float32).view(3, h, w)
    label = torch.arange(h * w).view(h, w) % 13
    depth = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, h, w)
    normal = torch.zeros(3, h, w)
    normal[2] = 1.0
    out_img, out_lab, out_depth, out_normal = scale_crop(image, label, depth, normal, 1.5, top=1, left=2)
    # crop 4x4 at (1, 2) resized to 6x6: nearest picks source rows/cols floor(i * 4 / 6)
    src = [0, 0, 1, 2, 2, 3]
    crop_depth = depth[0, 1:5, 2:6]
    expected_depth = crop_depth[src][:, src] / 1.5
    assert torch.allclose(out_depth[0], expected_depth)
    assert torch.equal(out_lab, label[1:5, 2:6][src][:, src])
    assert out_lab.dtype == torch.int64
    # bilinear with align_corners=True keeps the crop's corners
    assert out_img[:, 0, 0].tolist() == image[:, 1, 2].tolist()
    assert out_img[:, -1, -1].tolist() == image[:, 4, 5].tolist()
    assert torch.allclose(out_normal, normal)  # a constant field stays constant
    # scale 1.0 is the identity
    same = scale_crop(image, label, depth, normal, 1.0, 0, 0)
    assert all(torch.allclose(a.float(), b.float()) for a, b in zip(same, (image, label, depth, normal)))


def test_flip_mirrors_and_negates_the_normal_x_component():
    image = torch.tensor([[[1.0, 2.0, 3.0]]]).expand(3, 1, 3)
    label = torch.tensor([[0, 1, 2]])
    depth = torch.tensor([[[1.0, 2.0, 3.0]]])
    normal = torch.tensor([[[0.6, 0.0, -0.8]], [[0.0, 0.6, 0.0]], [[0.8, 0.8, 0.6]]])  # [3, 1, 3]
    f_img, f_lab, f_depth, f_normal = hflip(image, label, depth, normal)
    assert f_img[0, 0].tolist() == [3.0, 2.0, 1.0]
    assert f_lab.tolist() == [[2, 1, 0]]
    assert f_depth.tolist() == [[[3.0, 2.0, 1.0]]]
    assert f_normal[0, 0].tolist() == pytest.approx([0.8, -0.0, -0.6])   # x: mirrored and negated
    assert f_normal[1, 0].tolist() == pytest.approx([0.0, 0.6, 0.0])     # y: mirrored
    assert f_normal[2, 0].tolist() == pytest.approx([0.6, 0.8, 0.8])     # z: mirrored
    assert normal[0, 0, 0] == pytest.approx(0.6)  # the input is not modified


def test_random_augmentation_in_the_training_loader(nyu_root):
    plain = NYUv2(nyu_root, "train", image_size=SIZE)
    scaled = NYUv2(nyu_root, "train", image_size=SIZE, augment=True, scales=[1.5], flip=False)
    flipped = NYUv2(nyu_root, "train", image_size=SIZE, augment=True, scales=[], flip=True)
    _, base = plain[0]
    torch.manual_seed(0)
    _, out = scaled[0]
    valid = out["depth"][out["depth"] != 0]
    # every valid output depth is an input depth divided by the scale (nearest sampling)
    source = set((base["depth"][base["depth"] != 0] / 1.5).tolist())
    assert valid.numel() > 0 and set(valid.tolist()) <= source
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image, t = flipped[0]
        if torch.equal(t["depth"], base["depth"]):
            seen.add("kept")
            assert torch.equal(t["normal"], base["normal"])
        else:
            seen.add("flipped")
            assert torch.equal(t["depth"], base["depth"].flip(-1))
            assert torch.equal(t["normal"][0], -base["normal"][0].flip(-1))
            assert torch.equal(t["normal"][1:], base["normal"][1:].flip(-1))
    assert seen == {"kept", "flipped"}


# -------------------------------------------------------------------------------- loader
def test_loader_reads_the_mtan_layout(nyu_root):
    ds = NYUv2(nyu_root, "val", image_size=SIZE)
    assert len(ds) == 2
    x, targets = ds[1]
    raw = {k: np.load(nyu_root / "val" / k / "1.npy") for k in ("image", "label", "depth", "normal")}
    assert x.shape == (3, *SIZE) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(np.moveaxis(raw["image"], -1, 0)))
    assert targets["segmentation"].dtype == torch.int64
    assert torch.equal(targets["segmentation"], torch.from_numpy(raw["label"]).long())
    assert torch.equal(targets["depth"], torch.from_numpy(np.moveaxis(raw["depth"], -1, 0)))
    assert torch.equal(targets["normal"], torch.from_numpy(np.moveaxis(raw["normal"], -1, 0)))


def test_benchmark_splits_tasks_and_validation(nyu_root):
    b = build_benchmark(dataset_cfg(nyu_root), batch_size=2, seed=0)
    assert b.task_names == ["segmentation", "depth", "normal"]
    assert b.val is None and b.train.num_examples == 4 and b.test.num_examples == 2
    x, y = next(iter(b.train))
    assert x.shape == (2, 3, *SIZE) and y["depth"].shape == (2, 1, *SIZE)
    b = build_benchmark(dataset_cfg(nyu_root, val_size=1, tasks=["depth", "normal"]), batch_size=2, seed=0)
    assert b.task_names == ["depth", "normal"]
    assert b.train.num_examples == 3 and b.val.num_examples == 1
    _, y = next(iter(b.val))
    assert set(y) == {"depth", "normal"}


def test_resident_cache_matches_the_files_and_augments_on_the_device(nyu_root):
    streamed = build_benchmark(dataset_cfg(nyu_root, val_size=1), batch_size=2, seed=0)
    resident = build_benchmark(dataset_cfg(nyu_root, val_size=1, cache="memory"), batch_size=2, seed=0)
    for a, b in ((streamed.test, resident.test), (streamed.val, resident.val)):
        (xa, ya), (xb, yb) = next(iter(a)), next(iter(b))
        assert torch.equal(xa, xb) and all(torch.equal(ya[t], yb[t]) for t in ya)
        assert yb["segmentation"].dtype == torch.int64
    # training batches are augmented: depth values are input depths divided by a scale
    raw = torch.from_numpy(np.stack([np.load(nyu_root / "train" / "depth" / f"{i}.npy") for i in range(4)]))
    allowed = {v for s in (1.0, 1.2, 1.5) for v in (raw[raw != 0] / s).tolist()}
    x, y = next(iter(resident.train))
    assert x.shape == (2, 3, *SIZE) and y["normal"].shape == (2, 3, *SIZE)
    assert set(y["depth"][y["depth"] != 0].tolist()) <= allowed
    subset = build_benchmark(dataset_cfg(nyu_root, cache="memory", tasks=["normal"]), batch_size=2, seed=0)
    _, y = next(iter(subset.train))
    assert set(y) == {"normal"}


# -------------------------------------------------------------------------------- errors
def test_missing_dataset_names_the_expected_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"train/image/0\.npy") as err:
        build_benchmark(dataset_cfg(tmp_path / "nowhere"), batch_size=2, seed=0)
    assert "dataset.root" in str(err.value) and "MTL_BENCH_DATA" in str(err.value)


@pytest.mark.parametrize("damage, message", [
    ("missing_folder", r"missing folder .*train/normal"),
    ("wrong_shape", r"depth: shape \(32, 64\), expected \(32, 64, 1\)"),
    ("count_mismatch", r"mismatched counts .*label=3"),
    ("gap", r"not numbered 0\.\.3 .*missing e\.g\. 2\.npy"),
    ("truncated", r"1 damaged file\(s\) in .*train/depth: 3\.npy: [0-9,]+ bytes, but its header \(float32 \(32, 64, 1\)\) needs"),
    ("not_npy", r"damaged file\(s\) in .*val/image: 1\.npy: not a readable \.npy file"),
])
def test_malformed_dataset_is_reported(tmp_path, damage, message):
    root = write_nyuv2(tmp_path, n_train=4, n_val=2, size=tuple(SIZE))
    if damage == "missing_folder":
        for f in (root / "train" / "normal").iterdir():
            f.unlink()
        (root / "train" / "normal").rmdir()
    elif damage == "wrong_shape":
        np.save(root / "train" / "depth" / "0.npy", np.ones(SIZE, dtype=np.float32))
    elif damage == "count_mismatch":
        (root / "train" / "label" / "3.npy").unlink()
    elif damage == "truncated":  # a copy cut short: only the last sample is wrong
        path = root / "train" / "depth" / "3.npy"
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "not_npy":
        (root / "val" / "image" / "1.npy").write_text("<html>error page</html>")
    elif damage == "gap":
        for sub in ("image", "label", "depth", "normal"):
            (root / "train" / sub / "2.npy").rename(root / "train" / sub / "7.npy")
    with pytest.raises(DatasetNotFoundError, match=message):
        build_benchmark(dataset_cfg(root), batch_size=2, seed=0)


# -------------------------------------------------------------------------------- models
def test_segnet_and_dilated_resnet_shapes(nyu_root):
    b = build_benchmark(dataset_cfg(nyu_root), batch_size=2, seed=0)
    x, _ = next(iter(b.test))
    small = torch.rand(1, 3, 16, 24)  # ResNet-50 is slow on a CPU: any size divisible by 8
    for name, inp in (("segnet", x), ("resnet50_dilated", small)):
        model = build_model(OmegaConf.create({"name": name, "variant": "standard", "pretrained": False}), b).eval()
        with torch.no_grad():
            z = model.encoder(inp)
            out = {t: h(z) for t, h in model.heads.items()}
        n, size = inp.shape[0], tuple(inp.shape[-2:])
        assert out["segmentation"].shape == (n, 13, *size)
        assert out["depth"].shape == (n, 1, *size) and out["normal"].shape == (n, 3, *size)
        assert z.shape[:2] == ((n, 64) if name == "segnet" else (n, 2048))
        assert model.last_shared_parameters()
    assert z.shape[-2:] == (2, 3)  # output stride 8: dilation replaces the strides of layers 3 and 4


def test_segnet_matches_mtan_parameter_count():
    from mtl_bench.models.segnet import build_segnet

    # MTAN's split script reports sizes relative to 24,981,069: SegNet with one 13-class head
    assert sum(p.numel() for p in build_segnet({"segmentation": 13}).parameters()) == 24_981_069


def test_pretrained_weights_missing_gives_a_clear_error(nyu_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    b = build_benchmark(dataset_cfg(nyu_root), batch_size=2, seed=0)
    with pytest.raises(FileNotFoundError, match=r"(?s)checkpoints/resnet50-0676ba61\.pth.*IMAGENET1K_V1"):
        build_model(OmegaConf.create({"name": "resnet50_dilated", "pretrained": True}), b)


def test_pretrained_weights_are_loaded_from_the_hub_cache(nyu_root, tmp_path, monkeypatch):
    from torchvision.models import resnet50

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    state = resnet50().state_dict()
    torch.save(state, ckpt / "resnet50-0676ba61.pth")
    b = build_benchmark(dataset_cfg(nyu_root), batch_size=2, seed=0)
    model = build_model(OmegaConf.create({"name": "resnet50_dilated", "pretrained": True}), b)
    assert torch.equal(model.encoder.layer4[-1].conv3.weight, state["layer4.2.conv3.weight"])


def test_resnet_refuses_a_last_batch_of_one(tmp_path):
    root = write_nyuv2(tmp_path, n_train=3, n_val=2, size=tuple(SIZE))
    b = build_benchmark(dataset_cfg(root), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="dataset.drop_last=true"):
        build_model(OmegaConf.create({"name": "resnet50_dilated", "pretrained": False}), b)


# ------------------------------------------------------------------------------------ CLI
def test_cli_missing_dataset_says_where_to_put_it(tmp_path, run_cli):
    result = run_cli("run", "dataset=nyuv2", f"dataset.root={tmp_path / 'nowhere'}", "trainer.device=cpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "train/image/0.npy" in result.stderr and "dataset.root" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("strategy, cache", [("ew", "memory"), ("mgda", "none"), ("dtp", "memory")])
def test_cli_run_one_epoch(nyu_root, tmp_path, run_cli, strategy, cache):
    result = run_cli("run", "dataset=nyuv2", f"dataset.root={nyu_root}", f"dataset.image_size=[{SIZE[0]},{SIZE[1]}]",
                     "dataset.num_workers=0", f"dataset.cache={cache}", f"strategy={strategy}", "trainer.epochs=1",
                     "trainer.batch_size=4", "trainer.device=cpu",
                     "trainer.progress=never", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["identity"]["model"] == "segnet"
    assert summary["selected"]["rule"] == "mean_last_k"
    test = summary["final"]["test"]
    assert set(test) == {"segmentation", "depth", "normal"}
    assert set(test["normal"]) == {"mean_angle", "median_angle", "within_11.25", "within_22.5", "within_30", "loss"}
    assert 0 <= test["segmentation"]["miou"] <= 1 and test["depth"]["abs_error"] > 0
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert any(r["split"] == "test" and r["metric"] == "pixel_accuracy" for r in records)


def test_missing_files_tells_before_loading(nyu_root, tmp_path):
    """What a sweep checks once before starting its jobs: "" for a copy in place, the builder's
    message (the expected layout) for a root without it."""
    from mtl_bench.data import missing_files

    assert missing_files(dataset_cfg(nyu_root)) == ""
    problem = missing_files(dataset_cfg(tmp_path / "nowhere"))
    assert "NYUv2 not found" in problem and "train/image/0.npy" in problem and "dataset.root" in problem
