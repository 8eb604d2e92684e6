"""dataset=arrays: a user's .npz / .pt / .parquet file of inputs and declared targets, no code."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import cli
from mtl_bench.data import build_benchmark

TARGETS = {"label": "classification", "flag": "binary", "value": "regression"}


def write_data(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 4)).astype(np.float32)
    columns = {"label": rng.integers(0, 5, n), "flag": rng.integers(0, 2, n), "value": rng.standard_normal(n),
               "part": np.array(["train"] * 150 + ["val"] * 20 + ["test"] * 30)}
    if path.suffix == ".npz":
        np.savez(path, x=x, **columns)
    elif path.suffix == ".pt":
        torch.save({"x": torch.as_tensor(x), **{k: torch.as_tensor(v) for k, v in columns.items() if k != "part"}}, path)
    else:
        frame = pd.DataFrame(x.reshape(n, -1), columns=[f"f{i}" for i in range(12)])
        pd.concat([frame, pd.DataFrame(columns)], axis=1).to_parquet(path)
    return x, columns


def config(path, **extra):
    return OmegaConf.create({"name": "arrays", "path": str(path), "inputs": [f"f{i}" for i in range(12)] if path.suffix == ".parquet" else "x",
                             "targets": TARGETS, "split": None, "val_fraction": 0.1, "test_fraction": 0.2, "seed": 0,
                             "flatten": True, "standardize": True, "tasks": None, **extra})


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".parquet"])
def test_each_file_type_gives_the_declared_tasks_and_standardised_inputs(tmp_path, suffix):
    x, columns = write_data(tmp_path / f"data{suffix}")
    bench = build_benchmark(config(tmp_path / f"data{suffix}"), batch_size=32, seed=0)
    assert bench.task_names == ["label", "flag", "value"]
    assert bench.info["outputs"] == {"label": 5, "flag": 2, "value": 1} and bench.info["input_dim"] == 12
    assert bench.info["rows"] == {"val": 20, "test": 40, "train": 140}
    train = bench.train.inputs
    torch.testing.assert_close(train.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    assert bench.train.targets["label"].dtype == torch.long and bench.train.targets["value"].shape == (140, 1)
    x_batch, y = next(iter(bench.train))
    assert x_batch.shape == (32, 12) and set(y) == {"label", "flag", "value"}


def test_a_split_column_is_used_as_given(tmp_path):
    write_data(tmp_path / "data.parquet")
    bench = build_benchmark(config(tmp_path / "data.parquet", split="part", inputs=None, tasks=["value"]), batch_size=16,
                            seed=0)
    assert bench.info["rows"] == {"train": 150, "val": 20, "test": 30} and bench.task_names == ["value"]
    assert bench.info["input_dim"] == 12  # every column but the targets and the split
    with pytest.raises(ValueError, match=r"column\(s\) \['part'\] are not numeric"):
        build_benchmark(config(tmp_path / "data.parquet", inputs=None), batch_size=16, seed=0)


@pytest.mark.parametrize("change,message", [
    ({"targets": {"label": "ordinal"}}, "unknown task type"),
    ({"targets": {"nope": "regression"}}, r"has no array\(s\) \['nope'\]"),
    ({"targets": {"value": "classification"}}, "not integer labels"),
    ({"targets": {"label": "binary"}}, "binary but it holds"),
    ({"path": "missing.npz"}, "no such file"),
    ({"val_fraction": 0.7, "test_fraction": 0.5}, "sum below 1"),
])
def test_bad_declarations_are_one_clear_error(tmp_path, change, message):
    write_data(tmp_path / "data.npz")
    cfg = config(tmp_path / "data.npz")
    if "path" in change:
        change = {"path": str(tmp_path / change["path"])}
    cfg = OmegaConf.merge(cfg, change) if "targets" not in change else OmegaConf.create(
        {**OmegaConf.to_container(cfg), **change})
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_benchmark(cfg, batch_size=16, seed=0)


def test_an_arrays_run_through_the_cli(tmp_path):
    write_data(tmp_path / "data.npz")
    run = cli("run", "dataset=arrays", "dataset.path=data.npz", "dataset.targets={label:classification,value:regression}",
              "trainer.epochs=2", "model.hidden=16", "hydra.run.dir=run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["identity"]["tasks"] == ["label", "value"]
    missing = cli("run", "dataset=arrays", "trainer.epochs=1", "hydra.run.dir=bad", cwd=tmp_path)
    assert missing.returncode == 2 and "dataset.path is not set" in missing.stderr
