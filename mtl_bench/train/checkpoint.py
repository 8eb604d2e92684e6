"""Checkpoints: everything needed to resume a run exactly, written atomically."""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from ..protocol import SAME_NUMBERS, is_key_in
from .run_dir import CHECKPOINT_FILE, has_ended, read_summary

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used; the message says what to do."""


class SettingsMismatch(CheckpointError):
    """The run folder holds a run of other settings: it is refused and left as it is."""


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def on_host(tree):
    """``tree`` with its tensors on the CPU. Random-number states (torch's, CUDA's, a loader's
    generator) are byte tensors their setters take on the CPU only; a checkpoint loaded with
    ``map_location`` a GPU has them there."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {key: on_host(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(on_host(value) for value in tree)
    return tree


def save_checkpoint(path: Path, state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location=None) -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(err).__name__}: {err}). Delete it to restart this run "
            f"from scratch (its metrics.jsonl is kept), or point hydra.run.dir at a fresh directory."
        ) from err


# Settings a resumed run may change: those that leave its numbers alone (SAME_NUMBERS), more epochs,
# a preset's report metadata (``experiment``: its paper, grids and table settings, which the trainer
# never reads), and a device, compilation, a cache, the loader's workers or a process count, with
# which the run continues but not bit for bit (other random streams or batch-norm statistics;
# README "Resume a single run").
RESUMABLE_CHANGES = ("trainer.epochs", *SAME_NUMBERS, "experiment", "trainer.device", "trainer.compile",
                     "dataset.cache", "dataset.num_workers", "trainer.distributed")


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def settings_mismatch(stored: dict | None, current: dict | None) -> list[str]:
    """Keys whose values differ between a stored run's settings and the current ones. A key the
    stored run lacks is an option added to mtl-bench since (a config's ``_target_``, a cache
    folder), whose default keeps what the run computed: it is no difference."""
    if not stored or not current:
        return []
    old, new = _flatten(stored), _flatten(current)

    def now(key):  # a stored leaf (null) that is now a subtree ({name: rlw}) is a change too
        if key in new:
            return new[key]
        below = {k[len(key) + 1:]: v for k, v in new.items() if k.startswith(key + ".")}
        return below or None
    return [f"{k}: {old[k]!r} -> {now(k)!r}" for k in sorted(old)
            if old[k] != now(k) and not is_key_in(k, RESUMABLE_CHANGES)]


def check_settings(run_dir: Path, stored: dict | None, current: dict | None) -> None:
    """Refuse (:class:`SettingsMismatch`) a run folder whose checkpoint was made with other settings."""
    changed = settings_mismatch(stored, current)
    if changed:
        raise SettingsMismatch(
            f"{run_dir} holds a run with other settings ({'; '.join(changed)}). Resume it with its own "
            f"overrides, or start this one in a fresh folder (hydra.run.dir=..., or another hydra.sweep.dir)"
        )


def ended_run(run_dir: Path, epochs: int, settings: dict | None) -> dict | None:
    """The summary of the run in ``run_dir`` when it has ended (a start of it has nothing to do),
    after checking that its checkpoint was made with these ``settings``; None for a run to train."""
    summary = read_summary(run_dir)
    if not has_ended(summary, epochs, run_dir):
        return None
    if (Path(run_dir) / CHECKPOINT_FILE).exists():  # the run there must be this one
        check_settings(run_dir, load_checkpoint(Path(run_dir) / CHECKPOINT_FILE, map_location="cpu").get("settings"),
                       settings)
    log.info("run in %s already %s; nothing to do", run_dir, summary["status"])
    return summary
