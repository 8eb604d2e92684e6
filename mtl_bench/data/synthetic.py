"""Synthetic multi-task regression: the GradNorm toy problem.

Chen et al., "GradNorm", ICML 2018 (arXiv 1711.02257), section 4: task i regresses
``f_i(x) = sigma_i * tanh((B + eps_i) x)`` with ``B`` entries ~ N(0, 10^2) shared by all tasks,
``eps_i`` entries ~ N(0, 3.5^2), constant for a dataset seed. The sigmas set the loss scales, so
an unweighted sum is dominated by the task with the largest sigma.

Presets (docs/protocols.md): ``slaw`` (Crawshaw & Kosecka's re-implementation: 10,000
samples, x ~ N(0, 0.01^2), sigma = (1, 10) for T = 2, sigma_i = i otherwise), ``paper``
(sigma = (1, 100) for T = 2; the sample count and input law are not in the paper, the same as
``slaw`` are used) and ``spread`` (sigma_i log-spaced from 1 to 100 for any T: loss scales four
orders of magnitude apart; T = 2 is ``paper``'s pair). Data is generated with ``torch.Generator`` on the CPU: deterministic for a seed.
The model is fed the standardised input x / input_std (``standardize=true``, the default): the
targets are unchanged, but a default-initialised MLP barely learns from inputs of std 0.01.
"""
from __future__ import annotations

import torch
from omegaconf import ListConfig, OmegaConf

from .benchmark import Benchmark, TensorBatches
from .tasks import regression_task

PRESET_SIGMAS = {"slaw": (1.0, 10.0), "paper": (1.0, 100.0)}
PRESETS = (*PRESET_SIGMAS, "spread")


def default_sigmas(num_tasks: int, preset: str) -> list[float]:
    """The sigmas of a preset: the T = 2 pair, or ``sigma_i = i`` (i = 1..T) for other T;
    ``spread``: ``100^((i-1)/(T-1))``, i = 1..T."""
    if preset not in PRESETS:
        raise ValueError(f"dataset.preset={preset!r} is unknown; choose one of {sorted(PRESETS)}")
    if preset == "spread":
        return [100.0 ** (i / max(num_tasks - 1, 1)) for i in range(num_tasks)]
    if num_tasks == 2:
        return list(PRESET_SIGMAS[preset])
    return [float(i) for i in range(1, num_tasks + 1)]


def make_synthetic(
    num_tasks: int = 2,
    sigmas: list[float] | None = None,
    preset: str = "slaw",
    num_samples: int = 10_000,
    num_val: int = 1_000,
    num_test: int = 1_000,
    input_dim: int = 250,
    output_dim: int = 100,
    input_std: float = 0.01,
    b_std: float = 10.0,
    eps_std: float = 3.5,
    noise: float = 0.0,
    seed: int = 0,
) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Generate ``{split: (x, {task_name: y})}``. Train gets ``num_samples - num_val`` rows;
    the test rows are drawn afresh from the same law. ``noise`` adds N(0, noise^2) to targets."""
    if sigmas is not None and not isinstance(sigmas, (list, tuple)):
        raise ValueError(f"dataset.sigmas={sigmas!r} must be a list with one sigma per task, e.g. dataset.sigmas=[1,10]")
    sigmas = list(sigmas) if sigmas else default_sigmas(num_tasks, preset)
    if len(sigmas) != num_tasks:
        raise ValueError(f"dataset.sigmas has {len(sigmas)} values but dataset.num_tasks={num_tasks}")
    if num_val >= num_samples:
        raise ValueError(f"dataset.num_val={num_val} must be smaller than dataset.num_samples={num_samples}")
    gen = torch.Generator().manual_seed(int(seed))
    base = torch.randn(output_dim, input_dim, generator=gen) * b_std
    eps = [torch.randn(output_dim, input_dim, generator=gen) * eps_std for _ in range(num_tasks)]
    x_all = torch.randn(num_samples + num_test, input_dim, generator=gen) * input_std
    names = task_names(num_tasks)
    ys = {}
    for name, sigma, e in zip(names, sigmas, eps):
        y = sigma * torch.tanh(x_all @ (base + e).T)
        if noise > 0:
            y = y + noise * torch.randn(y.shape, generator=gen)
        ys[name] = y
    n_train = num_samples - num_val
    cuts = {"train": (0, n_train), "val": (n_train, num_samples), "test": (num_samples, num_samples + num_test)}
    return {s: (x_all[a:b], {k: v[a:b] for k, v in ys.items()}) for s, (a, b) in cuts.items()}


def task_names(num_tasks: int) -> list[str]:
    return [f"task{i}" for i in range(num_tasks)]


def build_synthetic(cfg, tasks: list[str], batch_size: int, seed: int) -> Benchmark:
    """Benchmark from the ``dataset`` config node (configs/dataset/synthetic.yaml)."""
    sigmas = OmegaConf.to_container(cfg.sigmas) if isinstance(cfg.get("sigmas"), ListConfig) else cfg.get("sigmas")
    splits = make_synthetic(
        num_tasks=cfg.num_tasks,
        sigmas=sigmas,
        preset=cfg.preset,
        num_samples=cfg.num_samples,
        num_val=cfg.num_val,
        num_test=cfg.num_test,
        input_dim=cfg.input_dim,
        output_dim=cfg.output_dim,
        input_std=cfg.input_std,
        noise=cfg.noise,
        seed=cfg.seed,
    )
    sigmas = sigmas or default_sigmas(cfg.num_tasks, cfg.preset)
    scale = dict(zip(task_names(cfg.num_tasks), sigmas))
    task_objs = [regression_task(name, scale=scale[name] ** 2) for name in tasks]

    # The targets are functions of x ~ N(0, input_std^2); the network sees x / input_std (unit
    # variance): with std 0.01 raw inputs a default-initialised MLP barely trains.
    input_scale = 1.0 / cfg.input_std if cfg.get("standardize", True) else 1.0

    def loader(split, shuffle):
        x, ys = splits[split]
        return TensorBatches(x * input_scale, {t: ys[t] for t in tasks}, batch_size, shuffle=shuffle, seed=seed)

    return Benchmark(
        name="synthetic",
        tasks=task_objs,
        train=loader("train", True),
        val=loader("val", False),
        test=loader("test", False),
        info={"input_dim": cfg.input_dim, "output_dim": cfg.output_dim, "sigmas": sigmas},
    )
