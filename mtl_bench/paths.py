"""Where mtl-bench's own files are: the config folder Hydra composes from."""
from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    """configs/ of a clone (or editable install), else the copy shipped inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "configs", here / "configs"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"mtl-bench's configs/ not found next to {here}; reinstall the package")
