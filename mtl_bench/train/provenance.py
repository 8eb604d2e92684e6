"""Where a run's numbers came from: source commit, device, libraries, threads, command line."""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import torch

LIBRARIES = ("numpy", "scipy", "quadprog", "pandas", "torchvision")


def library_versions(names=LIBRARIES) -> dict[str, str | None]:
    """Installed version of each library (None when it is not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


def git_state(package_dir: Path | None = None) -> dict | None:
    """``{"commit", "dirty"}`` of the git checkout mtl-bench is imported from; None when it is not
    imported from one, or git is missing or fails."""
    root = (package_dir or Path(__file__).resolve().parents[1]).parent
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def device_info(device: torch.device) -> dict:
    """Device name, CUDA and cuDNN versions (None on the CPU) and torch's thread counts."""
    cuda = device.type == "cuda"
    return {
        "device_name": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def provenance(device: torch.device) -> dict:
    """The summary.json ``provenance`` block of a run on ``device``."""
    return {"git": git_state(), **device_info(device), "libraries": library_versions(),
            "host": platform.node(), "platform": platform.platform(), "command": list(sys.argv)}
