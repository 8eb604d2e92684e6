"""Synthetic regression and MultiMNIST: determinism, construction rule, splits, labels, errors."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from mtl_bench.data import DatasetNotFoundError, build_benchmark
from mtl_bench.data import multimnist as mm
from mtl_bench.data.synthetic import make_synthetic

from conftest import make_mnist


def test_synthetic_is_deterministic_per_seed_and_scaled_by_sigma():
    a = make_synthetic(num_tasks=2, num_samples=200, num_val=50, num_test=50, seed=3)
    b = make_synthetic(num_tasks=2, num_samples=200, num_val=50, num_test=50, seed=3)
    c = make_synthetic(num_tasks=2, num_samples=200, num_val=50, num_test=50, seed=4)
    torch.testing.assert_close(a["train"][1]["task1"], b["train"][1]["task1"])
    assert not torch.equal(a["train"][0], c["train"][0])
    x, ys = a["train"]
    assert x.shape == (150, 250) and ys["task0"].shape == (150, 100)
    assert ys["task0"].abs().max() <= 1.0 and ys["task1"].abs().max() <= 10.0  # sigma * tanh
    assert ys["task1"].abs().max() > 1.0
    paper = make_synthetic(num_tasks=2, preset="paper", num_samples=200, num_val=50, num_test=50)
    assert paper["train"][1]["task1"].abs().max() > 10.0


def test_synthetic_sigmas_must_match_tasks():
    with pytest.raises(ValueError, match="dataset.sigmas"):
        make_synthetic(num_tasks=3, sigmas=[1.0, 2.0])


def test_nearest_indices_match_pil_nearest():
    canvas = np.random.default_rng(0).integers(0, 256, size=(36, 36)).astype(np.uint8)
    pil = np.asarray(Image.fromarray(canvas).resize((28, 28), Image.NEAREST))
    idx = mm.nearest_indices()
    np.testing.assert_array_equal(canvas[idx][:, idx], pil)


def test_overlay_rule_on_hand_made_digits():
    left = np.zeros((1, 28, 28), np.uint8)
    right = np.zeros((1, 28, 28), np.uint8)
    left[0, 10, 10] = 200   # inside the overlap (canvas 10, 10)
    right[0, 4, 4] = 100    # canvas (10, 10) too: the max wins
    left[0, 0, 0] = 255     # the canvas max, so byte-scaling keeps values
    images = np.concatenate([left, right])
    out = mm.overlay_pairs(images, np.array([1, 0]))
    canvas = np.zeros((36, 36))
    canvas[0, 0] = 255
    canvas[10, 10] = 200
    idx = mm.nearest_indices()
    np.testing.assert_array_equal(out[0], mm.bytescale(canvas[None])[0][idx][:, idx])


def test_bytescale_stretches_to_full_range():
    img = np.array([[[10, 20], [30, 60]]], dtype=np.uint8)
    np.testing.assert_array_equal(mm.bytescale(img)[0], [[0, 51], [102, 255]])
    assert mm.bytescale(np.zeros((1, 2, 2)))[0].max() == 0  # a blank canvas stays blank


def test_multimnist_pairs_are_deterministic_for_a_seed(mnist_root, tmp_path):
    a = mm.build_multimnist_arrays(mnist_root, seed=5, cache=False)
    b = mm.build_multimnist_arrays(mnist_root, seed=5, cache=False)
    c = mm.build_multimnist_arrays(mnist_root, seed=6, cache=False)
    assert mm.fingerprint(a) == mm.fingerprint(b) != mm.fingerprint(c)
    images, labels, sources = a["train"]
    assert images.shape == (300, 28, 28) and labels.shape == (300, 2) and sources.shape == (300, 2)
    mnist = mm.load_mnist(mnist_root)
    np.testing.assert_array_equal(labels[:, 0], mnist["train"][1])  # left digit keeps its label
    # the partner index is reproducible from the seed with numpy's PCG64 alone
    right = np.random.Generator(np.random.PCG64(5)).integers(0, 300, size=300)
    np.testing.assert_array_equal(labels[:, 1], mnist["train"][1][right])


def test_validation_pairs_share_no_digit_image_with_training_pairs(mnist_root):
    arrays = mm.build_multimnist_arrays(mnist_root, seed=0, val_size=60, cache=False)
    train_sources, val_sources = arrays["train"][2], arrays["val"][2]
    assert len(arrays["train"][0]) == 240 and len(arrays["val"][0]) == 60
    assert not set(train_sources.ravel()) & set(val_sources.ravel())
    mnist_labels = mm.load_mnist(mnist_root)["train"][1]
    np.testing.assert_array_equal(arrays["val"][1], mnist_labels[val_sources])  # labels follow the sources


def test_multimnist_cache_goes_to_the_user_cache_keyed_by_the_construction(mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "data"
    root.mkdir()
    (root / "MNIST").symlink_to(mnist_root / "MNIST")
    first = mm.build_multimnist_arrays(root, seed=1, val_size=20)
    assert not (root / "MultiMNIST").exists()  # the data folder is never written
    (path,) = (tmp_path / "xdg" / "mtl-bench" / "MultiMNIST").iterdir()
    assert path.name == f"multimnist_seed1_val20_v{mm.CACHE_VERSION}_mnist{mm.mnist_digest(root)}.pt"
    # the cached file holds exactly the arrays built without a cache
    fresh = mm.build_multimnist_arrays(root, seed=1, val_size=20, cache=False)
    stored = torch.load(path, weights_only=False)
    assert set(stored) == {"train", "val", "test"}
    for split in stored:
        for a, b in zip(stored[split], fresh[split]):
            np.testing.assert_array_equal(a, b)
    # read back without touching MNIST; other parameters or another MNIST get their own file
    monkeypatch.setattr(mm, "load_mnist", lambda *a, **k: pytest.fail("MNIST read despite the cache"))
    assert mm.fingerprint(mm.build_multimnist_arrays(root, seed=1, val_size=20)) == mm.fingerprint(first)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    mm.build_multimnist_arrays(root, seed=2, val_size=20)
    other = make_mnist(tmp_path / "other", seed=3)
    mm.build_multimnist_arrays(other, seed=1, val_size=20)
    assert len(list((tmp_path / "xdg" / "mtl-bench" / "MultiMNIST").iterdir())) == 3
    # dataset.cache_dir names another folder
    mm.build_multimnist_arrays(root, seed=1, val_size=20, cache_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "MultiMNIST" / path.name).exists()


def _cfg(root, **kw):
    base = dict(name="multimnist", root=str(root), tasks=None, download=False, cache=False, seed=0,
                val_size=50, label_fraction=1.0)
    base.update(kw)
    return OmegaConf.create(base)


def test_validation_split_and_label_fraction(mnist_root):
    b = build_benchmark(_cfg(mnist_root, label_fraction={"left": 0.5, "right": 0.2}), batch_size=32, seed=0)
    assert b.train.num_examples == 250 and b.val.num_examples == 50 and b.test.num_examples == 100
    left, right = b.train.targets["left"], b.train.targets["right"]
    assert (left != -1).sum().item() == 125 and (right != -1).sum().item() == 50
    assert not torch.equal(left != -1, right != -1)  # different subsets per task
    assert (b.val.targets["left"] != -1).all()      # validation and test keep every label


def test_single_task_selection(mnist_root):
    b = build_benchmark(_cfg(mnist_root, tasks=["right"]), batch_size=32, seed=0)
    assert b.task_names == ["right"] and list(b.train.targets) == ["right"]
    with pytest.raises(ValueError, match="unknown task"):
        build_benchmark(_cfg(mnist_root, tasks=["middle"]), batch_size=32, seed=0)


def test_missing_mnist_names_the_files_and_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        build_benchmark(_cfg(tmp_path), batch_size=32, seed=0)
    message = str(err.value)
    assert "train-images-idx3-ubyte" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "dataset.download=true" in message and "MTL_BENCH_DATA" in message


@pytest.mark.parametrize("name, damage, message", [
    ("train-images-idx3-ubyte", "truncate", r"train-images-idx3-ubyte is 2[0-9,]+ bytes but its header announces 300 "
                                            r"images, which take 235,216 bytes"),
    ("t10k-labels-idx1-ubyte", "magic", r"t10k-labels-idx1-ubyte does not start with the idx labels magic number 2049"),
    ("train-labels-idx1-ubyte", "empty", r"train-labels-idx1-ubyte is 0 bytes, shorter than its 8-byte header"),
])
def test_damaged_mnist_names_the_file_its_size_and_the_fix(mnist_root, tmp_path, name, damage, message):
    import shutil

    shutil.copytree(mnist_root, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "MNIST" / "raw" / name
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) - 20_000], "magic": b"\0\0\0\0" + data[4:], "empty": b""}[damage])
    with pytest.raises(DatasetNotFoundError, match=message) as err:
        build_benchmark(_cfg(tmp_path, cache=False), batch_size=32, seed=0)
    assert "dataset.download=true" in str(err.value) and "47,040,016" in str(err.value)


def test_unlabelled_batches_give_zero_loss_not_nan():
    from mtl_bench.data.tasks import classification_loss

    pred = torch.randn(4, 10)
    assert classification_loss(pred, torch.full((4,), -1)).item() == 0.0
