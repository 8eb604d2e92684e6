"""Experiment trackers (mtl_bench/train/trackers.py): real CLI runs, the trackers' files read back
with the trackers' own readers and compared with metrics.jsonl, the source of truth."""
import json
import math
import struct
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import cli, read_jsonl

SMALL = ["dataset.num_samples=300", "dataset.num_val=60", "dataset.num_test=60", "model.hidden=16",
         "trainer.batch_size=30", "trainer.log_interval=4", "diagnostics.every=3", "strategy=mgda",
         "trainer.progress=never"]


def _run(tmp_path, *overrides, run_dir="run", env=None):
    proc = cli("run", *SMALL, f"hydra.run.dir={run_dir}", *overrides, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / run_dir


def _expected(run_dir: Path) -> dict[str, dict[int, float]]:
    """metrics.jsonl as tag -> {step: value} (null values are not logged to trackers)."""
    out = defaultdict(dict)
    for r in read_jsonl(run_dir / "metrics.jsonl"):
        if r["value"] is not None:
            tag = f"{r['split']}/{r['task']}/{r['metric']}"
            assert r["step"] not in out[tag], f"{tag} logged twice at step {r['step']}"
            out[tag][r["step"]] = r["value"]
    return out


def _tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _mlflow(uri: str):
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _assert_same(expected, logged: dict[str, list[tuple[int, float]]], rel: float):
    for tag, values in expected.items():
        steps = [s for s, _ in logged.get(tag, [])]
        assert sorted(steps) == sorted(values), f"{tag}: steps {sorted(steps)} != {sorted(values)}"
        for step, value in logged[tag]:
            assert math.isclose(value, values[step], rel_tol=rel, abs_tol=1e-12), (tag, step, value, values[step])


def test_tensorboard_and_mlflow_hold_the_values_of_metrics_jsonl(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    run = _run(tmp_path, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}", "trainer.epochs=2")
    expected = _expected(run)
    assert any(t.startswith("diagnostics/") for t in expected) and any(t.startswith("train_step/") for t in expected)
    assert any(t.startswith("val/") for t in expected) and any(t.endswith("/weight") for t in expected)

    # TensorBoard stores float32 scalars: equal up to float32 rounding
    board = _tensorboard(run / "tensorboard")
    _assert_same(expected, {t: v for t, v in board.items() if not t.startswith("summary/")}, rel=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert board["summary/cost/seconds_per_step_median"][0][1] == pytest.approx(
        summary["cost"]["seconds_per_step_median"], rel=1e-6)

    client = _mlflow(uri)
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"]
    info = client.get_run(run_id)
    assert info.info.status == "FINISHED"
    assert info.data.params["strategy.name"] == "mgda" and info.data.params["trainer.epochs"] == "2"
    assert info.data.tags["status"] == "completed"
    history = {tag: [(m.step, m.value) for m in client.get_metric_history(run_id, tag)] for tag in expected}
    _assert_same(expected, history, rel=1e-12)


def _orphan(folder: Path, tag: str, step: int) -> None:
    """An event of a killed attempt: written after the last checkpoint, never in metrics.jsonl."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(folder)) as writer:
        writer.add_scalar(tag, 123.0, global_step=step)


def test_a_resumed_run_logs_each_epoch_once(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    args = ["logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={uri}"]
    run = _run(tmp_path, *args, "trainer.epochs=1")
    first_id = json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"]
    _orphan(run / "tensorboard", "val/task0/normalized_loss", 10_000)
    _run(tmp_path, *args, "trainer.epochs=3")  # trainer.epochs may change on resume: epochs 2 and 3 added

    expected = _expected(run)
    assert max(max(v) for v in expected.values()) < 10_000 and {r["epoch"] for r in read_jsonl(run / "metrics.jsonl")} == {1, 2, 3}
    board = _tensorboard(run / "tensorboard")
    _assert_same(expected, {t: v for t, v in board.items() if not t.startswith("summary/")}, rel=1e-6)

    client = _mlflow(uri)
    assert json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"] == first_id
    assert len(client.search_runs([client.get_experiment_by_name("mtl-bench").experiment_id])) == 1
    history = {tag: [(m.step, m.value) for m in client.get_metric_history(first_id, tag)] for tag in expected}
    _assert_same(expected, history, rel=1e-12)
    assert client.get_run(first_id).info.status == "FINISHED"


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['tensorboard'] = None; from mtl_bench.cli import main; "
            "main(['run', 'logger=tensorboard', 'hydra.run.dir=run'])")
    import subprocess

    from conftest import ROOT

    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mtl-bench: error")]
    assert lines == ["mtl-bench: error: logger=tensorboard needs the tensorboard package, which is not installed: "
                     "pip install 'mtl-bench[tensorboard]' (or choose another logger, e.g. logger=none)"]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_logger_group_composes_several_trackers(compose):
    assert dict(compose([]).logger) == {}
    cfg = compose(["logger=[tensorboard,mlflow,wandb]"])
    assert set(cfg.logger) == {"tensorboard", "mlflow", "wandb"}
    assert cfg.logger.mlflow.experiment == "mtl-bench" and cfg.logger.wandb.mode is None
    assert set(compose(["logger=tensorboard"]).logger) == {"tensorboard"}


def _wandb_records(path: Path):
    """The protobuf records of a W&B offline run file (a LevelDB-style log of 32 KiB blocks after a
    7-byte header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_wandb_offline_run_holds_the_values_of_metrics_jsonl(tmp_path):
    pytest.importorskip("wandb")
    run = _run(tmp_path, "logger=wandb", "logger.wandb.mode=offline", "trainer.epochs=1",
               env={"WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"})
    expected = _expected(run)
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    logged, config = defaultdict(list), {}
    for record in _wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for key, value in row.items():
                if key in expected:
                    logged[key].append((row["trainer/step"], value))
        elif kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    _assert_same(expected, logged, rel=1e-12)
    assert config["strategy"]["name"] == "mgda" and config["diagnostics"] == {"every": 3}


def test_tensorboard_dir_is_a_root_with_one_folder_per_run_and_mlflow_defaults_to_a_local_store(tmp_path, monkeypatch):
    from mtl_bench.train.trackers import MLflowTracker, TensorBoardTracker, shared_root_name

    # two runs whose folders share a name (two sweeps' seed=1,strategy=ew) write apart
    for sweep, value in (("sweep_a", 0.25), ("sweep_b", 0.5)):
        tracker = TensorBoardTracker({"dir": str(tmp_path / "tb")}, tmp_path / sweep / "seed=1,strategy=ew",
                                     {"seed": 1}, "ew")
        tracker.resume(0, 0)
        tracker.log_records([{"epoch": 1, "step": 5, "split": "val", "task": "a", "metric": "mse", "value": value},
                             {"epoch": 1, "step": 5, "split": "val", "task": "b", "metric": "mse", "value": None}])
        tracker.close()
    a, b = (shared_root_name(tmp_path / sweep / "seed=1,strategy=ew") for sweep in ("sweep_a", "sweep_b"))
    assert a != b and a.startswith("seed=1,strategy=ew-") and len(a) == len("seed=1,strategy=ew-") + 8
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted([a, b])
    assert _tensorboard(tmp_path / "tb" / a) == {"val/a/mse": [(5, 0.25)]}
    assert _tensorboard(tmp_path / "tb" / b) == {"val/a/mse": [(5, 0.5)]}

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert MLflowTracker({}, tmp_path / "run", {}, "ew").uri() == (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert MLflowTracker({}, tmp_path / "run", {}, "ew").uri() == "sqlite:///x.db"
    assert MLflowTracker({"tracking_uri": "file:///a"}, tmp_path / "run", {}, "ew").uri() == "file:///a"


def test_a_tracker_failing_mid_run_is_dropped_with_a_warning(tmp_path, caplog):
    from mtl_bench.train.trackers import Tracker

    class Broken(Tracker):
        name = "broken"
        calls = 0

        def write(self, records):
            Broken.calls += 1
            raise ConnectionError("server gone")

    tracker = Broken({}, tmp_path, {}, "x")
    tracker.resume(0, 0)
    record = {"epoch": 1, "step": 1, "split": "val", "task": "a", "metric": "mse", "value": 1.0}
    tracker.log_records([record])
    tracker.log_records([record])
    tracker.close()
    assert Broken.calls == 1 and "logger=broken failed (ConnectionError: server gone)" in caplog.text
