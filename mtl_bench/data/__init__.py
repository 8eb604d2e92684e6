"""Benchmarks: one module per dataset plus the Task/Benchmark types.

``build_benchmark(dataset_cfg, batch_size, seed)`` turns the ``dataset`` config node into a
:class:`Benchmark`; ``available_datasets()`` lists the built-in names. A user's data:
``_target_: my_mtl.load_data`` in a dataset config names a function called as
``load_data(batch_size=..., seed=..., **other keys but tasks)`` that returns a Benchmark;
``dataset.tasks`` then keeps a subset of its tasks as for the built-in datasets.
"""
from __future__ import annotations

from typing import Callable

from .benchmark import Benchmark, DatasetNotFoundError, TensorBatches, select_tasks
from .tasks import IGNORE, Metric, Task

# name -> (function giving all task names from the config, builder, check of the files or None)
_DATASETS: dict[str, tuple[Callable, Callable, Callable | None]] = {}


def register_dataset(name: str, all_tasks: Callable, builder: Callable, missing_files: Callable | None = None) -> None:
    """``missing_files(cfg) -> str``: why the dataset's files are not where ``cfg`` says ("" when
    they are), without reading them: a sweep checks it once before starting its jobs."""
    _DATASETS[name] = (all_tasks, builder, missing_files)


def available_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_tasks(cfg) -> list[str]:
    """Every task name the configured dataset offers."""
    return list(_lookup(cfg.name)[0](cfg))


def missing_files(cfg) -> str:
    """Why a run of the configured dataset would not find its files; "" when they are there, and
    for datasets that cannot tell before loading (synthetic, a loader of your own)."""
    if cfg.get("_target_"):
        return ""
    check = _lookup(cfg.name)[2]
    return check(cfg) if check else ""


def build_benchmark(cfg, batch_size: int, seed: int) -> Benchmark:
    if cfg.get("_target_"):
        return _user_benchmark(cfg, batch_size, seed)
    all_tasks, builder, _ = _lookup(cfg.name)
    tasks = select_tasks(list(all_tasks(cfg)), cfg.get("tasks"), cfg.name)
    return builder(cfg, tasks, batch_size, seed)


def _user_benchmark(cfg, batch_size: int, seed: int) -> Benchmark:
    from ..plugins import call_builder

    benchmark = call_builder(cfg, "dataset", drop=("tasks",), batch_size=batch_size, seed=seed)
    if not isinstance(benchmark, Benchmark):
        raise ValueError(f"dataset._target_={cfg._target_} returned {type(benchmark).__name__}; it must return a "
                         "mtl_bench.data.Benchmark(name, tasks, train, val, test)")
    keep = select_tasks(benchmark.task_names, cfg.get("tasks"), cfg.get("name") or cfg._target_)
    benchmark.tasks = [t for name in keep for t in benchmark.tasks if t.name == name]
    return benchmark


def _lookup(name: str):
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {available_datasets()}, or a loader of your own "
                         "(dataset._target_=my_mtl.load_data)")
    return _DATASETS[name]


def _register_builtin() -> None:
    from . import arrays, celeba, multimnist, nyuv2, synthetic

    register_dataset("synthetic", lambda cfg: synthetic.task_names(cfg.num_tasks), synthetic.build_synthetic)
    register_dataset("multimnist", lambda cfg: multimnist.TASKS, multimnist.build_multimnist, multimnist.missing_files)
    register_dataset("nyuv2", lambda cfg: nyuv2.TASKS, nyuv2.build_nyuv2, nyuv2.missing_files)
    register_dataset("celeba", lambda cfg: celeba.ATTRIBUTES, celeba.build_celeba, celeba.missing_files)
    register_dataset("arrays", arrays.task_names, arrays.build_arrays, arrays.missing_files)


_register_builtin()

__all__ = [
    "Benchmark", "DatasetNotFoundError", "IGNORE", "Metric", "Task", "TensorBatches",
    "available_datasets", "build_benchmark", "dataset_tasks", "missing_files", "register_dataset",
]
