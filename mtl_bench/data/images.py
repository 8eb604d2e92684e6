"""Image arithmetic the original loaders got from ``scipy.misc`` (removed from scipy in 1.3)."""
from __future__ import annotations

import numpy as np


def bytescale(images: np.ndarray) -> np.ndarray:
    """Scale each image's range (over all its pixels and channels) to 0..255 and round to uint8:
    ``scipy.misc.bytescale``'s rule, which ``scipy.misc.toimage`` and ``imresize`` applied to any
    non-uint8 image. ``images``: [N, ...]; a constant image becomes 0."""
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    cmin = flat.min(axis=1, keepdims=True)
    cmax = flat.max(axis=1, keepdims=True)
    span = cmax - cmin
    span[span == 0] = 1.0
    scaled = (flat - cmin) * (255.0 / span)
    return (scaled.clip(0, 255) + 0.5).astype(np.uint8).reshape(images.shape)
