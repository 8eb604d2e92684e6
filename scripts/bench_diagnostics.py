"""Step time with gradient diagnostics off and on every step (the worst case of diagnostics.every).

    python scripts/bench_diagnostics.py [--strategies ew:params,mgda:representation] [--steps 40] [--device cpu]

(from the repository root of a clone, on any machine; ``--device cuda`` on a GPU host).

Prints the median seconds per training step on the synthetic problem, off and with every step
diagnosed, per strategy and gradient space (one thread on the CPU; on CUDA the steps are
synchronised around each timed step). Loss weightings pay T extra backward passes on diagnosed
steps; gradient strategies reuse their rows. With diagnostics.every=K the extra cost per step is
about the difference divided by K.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from omegaconf import OmegaConf

from mtl_bench.train.experiment import build_trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def median_step(cfg, space: str, every, steps: int, device: torch.device) -> float:
    """Median seconds of a training step of the run ``cfg`` describes (built as ``mtl-bench run``
    builds it), in gradient ``space`` with the loop backend, diagnosed every ``every`` steps."""
    torch.manual_seed(0)
    cfg = OmegaConf.merge(cfg, {"grad": {"space": space, "method": "loop"}, "diagnostics": {"every": every},
                                "trainer": {"batch_size": 100}})
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(cfg, Path(folder), device)
        batches = [trainer.to_device(x, t) for x, t in list(trainer.benchmark.train)[: steps + 3]]
        times = []
        for i, (x, targets) in enumerate(batches):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            trainer.train_step(x, targets)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            trainer.step += 1
            if i >= 3:  # after the warm-up steps
                times.append(time.perf_counter() - start)
        trainer.diagnostics.records(1)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="ew:params,uw:params,mgda:params,mgda:representation,graddrop:params")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    a = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(a.device)
    print(f"{'strategy':<10} {'space':<16} {'off ms/step':>12} {'every step ms':>14}")
    for item in a.strategies.split(","):
        name, space = item.split(":")
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("config", overrides=[f"dataset.num_samples={100 * (a.steps + 3) + 1000}", f"strategy={name}"])
        off = median_step(cfg, space, None, a.steps, device)
        on = median_step(cfg, space, 1, a.steps, device)
        print(f"{name:<10} {space:<16} {1000 * off:>12.2f} {1000 * on:>14.2f}")


if __name__ == "__main__":
    main()
