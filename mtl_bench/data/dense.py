"""Losses and metrics of dense prediction: semantic segmentation, depth and surface normals.

Definitions follow the NYUv2 protocol of MTAN (Liu et al., CVPR 2019, arXiv 1803.10704) as used
by CAGrad, Nash-MTL and FAMO (docs/protocols.md#nyuv2):

- segmentation: cross-entropy over the pixels whose label is not :data:`IGNORE` (-1);
  metrics mIoU and pixel accuracy, both from ONE confusion matrix accumulated over the split;
- depth (``[B, 1, H, W]``, 0 = invalid): L1 over valid pixels; metrics absolute error and
  relative error ``|pred - gt| / gt``, averaged over every valid pixel of the split;
- normals (``[B, 3, H, W]`` unit vectors, all-zero = invalid): ``1 - cos`` over valid pixels with
  the prediction L2-normalised; metrics the angle error in degrees (mean, exact median over all
  valid pixels of the split) and the fraction of valid pixels within 11.25, 22.5 and 30 degrees.

Fractions (mIoU, pixel accuracy, within-t) are in [0, 1] as the official code computes them;
published tables print them times 100.

Where the reference implementations differ from these split-level definitions:

- mIoU: MTAN's and Nash-MTL's ``ConfMatrix`` computes ``diag / (row + col - diag)`` for every
  class and averages all of them, so a class absent from both the targets and the predictions of
  the whole split gives 0/0 = NaN and makes the mIoU NaN (this never happens on the full NYUv2 test
  split, where all 13 classes occur). ``absent="skip"`` (default) leaves such classes out of the
  mean, which equals the official value whenever the official value is defined;
  ``absent="nan"`` reproduces the official NaN. A class that is predicted but absent from the
  targets has IoU 0 under both rules. Predictions at ignored pixels never count.
- depth and normal errors: the official trainers compute them per batch and average the batch
  values (and the normal median is a mean of per-batch medians); here they are exact over the
  split's valid pixels. The two agree when every batch has the same number of valid pixels
  (and, for the median, only approximately otherwise).
- masks: the official code calls a pixel valid when the channel-sum of the target is non-zero;
  here depth is valid when ``depth != 0`` (identical, one channel) and a normal when any of its
  components is non-zero (differs only for non-zero vectors whose components sum to exactly 0).

Every metric accumulates tensors on the device with fixed shapes (no boolean indexing, whose
output size would need a host sync) and is read once per split by ``compute()``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .tasks import IGNORE, LossMetric, MeanMetric, Metric, RatioKPI, Task, batch_accuracy, labelled_count

THRESHOLDS = (11.25, 22.5, 30.0)


# --------------------------------------------------------------------------------- masks
def depth_mask(target: torch.Tensor) -> torch.Tensor:
    """Valid depth pixels: ``target != 0`` (``[B, 1, H, W]`` bool)."""
    return target != 0


def normal_mask(target: torch.Tensor) -> torch.Tensor:
    """Valid normal pixels: not the all-zero vector (``[B, 1, H, W]`` bool)."""
    return (target != 0).any(dim=1, keepdim=True)


def _check_dense(pred: torch.Tensor, target: torch.Tensor, channels: int | None, what: str) -> None:
    if target.dim() != 4 or (channels is not None and target.shape[1] != channels):
        raise ValueError(f"{what} target must be [B, {channels}, H, W], got {tuple(target.shape)}")
    if pred.shape[0] != target.shape[0] or pred.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"{what} prediction {tuple(pred.shape)} does not match target {tuple(target.shape)}")


# -------------------------------------------------------------------------------- losses
def segmentation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-wise cross-entropy averaged over labelled pixels (0, not NaN, when none is)."""
    summed = F.cross_entropy(pred, target, ignore_index=IGNORE, reduction="sum")
    return summed / (target != IGNORE).sum().clamp_min(1)


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 over valid depth pixels: ``sum(|pred - gt| * mask) / sum(mask)``."""
    _check_dense(pred, target, 1, "depth")
    mask = depth_mask(target)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1)


def normalize_normals(pred: torch.Tensor) -> torch.Tensor:
    """L2-normalise predicted normals over the channel dimension."""
    return F.normalize(pred, p=2, dim=1)


def normal_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - mean cosine`` over valid pixels, the prediction L2-normalised first."""
    _check_dense(pred, target, 3, "normal")
    mask = normal_mask(target)
    cos = (normalize_normals(pred) * target).sum(dim=1, keepdim=True)
    return 1 - (cos * mask).sum() / mask.sum().clamp_min(1)


# ------------------------------------------------------------------- KPIs (dtp, per batch)
DEPTH_KPI_RATIO = 1.25  # delta_1 of Eigen, Puhrsch & Fergus (NIPS 2014)


def _depth_within_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mask = depth_mask(target)
    pred = pred.clamp_min(1e-6)
    ratio = torch.maximum(pred / target.clamp_min(1e-6), target / pred)
    return torch.stack([((ratio < DEPTH_KPI_RATIO) & mask).sum(), mask.sum()])


#: the share of a batch's valid depth pixels with ``max(pred/gt, gt/pred) < 1.25`` (the threshold
#: accuracy delta_1 of Eigen et al. 2014), in [0, 1]; a non-positive prediction counts as wrong
depth_kpi = RatioKPI(_depth_within_sums)


def _normal_within_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mask = normal_mask(target)
    cos = (normalize_normals(pred) * target).sum(dim=1, keepdim=True)
    within = cos > math.cos(math.radians(THRESHOLDS[0]))
    return torch.stack([(within & mask).sum(), mask.sum()])


#: the share of a batch's valid normal pixels within 11.25 degrees of the target (the strictest
#: of the NYUv2 protocol's within-t metrics), in [0, 1]
normal_kpi = RatioKPI(_normal_within_sums)


def _per_pixel_ce(pred, target):
    values = F.cross_entropy(pred, target, ignore_index=IGNORE, reduction="none")
    return values, (target != IGNORE).sum()


def _per_pixel_l1(pred, target):
    mask = depth_mask(target)
    return (pred - target).abs() * mask, mask.sum()


def _per_pixel_cos(pred, target):
    mask = normal_mask(target)
    cos = (normalize_normals(pred) * target).sum(dim=1, keepdim=True)
    return (1 - cos) * mask, mask.sum()


# ------------------------------------------------------------------------ segmentation
class ConfusionMatrix(Metric):
    """A ``C x C`` confusion matrix (rows: target, columns: prediction) over the labelled pixels
    of a split, accumulated on the device with ``index_add_`` (no host sync)."""

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.reset()

    def reset(self) -> None:
        self.matrix = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        n = self.num_classes
        labels = pred.argmax(dim=1) if pred.dim() == target.dim() + 1 else pred
        target = target.long()
        valid = (target >= 0) & (target < n)
        # invalid pixels go to an extra bin n*n that compute() drops
        index = torch.where(valid, target * n + labels.long(), torch.full_like(target, n * n)).reshape(-1)
        if self.matrix is None:
            self.matrix = torch.zeros(n * n + 1, dtype=torch.int64, device=index.device)
        self.matrix.index_add_(0, index, torch.ones_like(index))

    def confusion(self) -> torch.Tensor:
        n = self.num_classes
        if self.matrix is None:
            return torch.zeros(n, n, dtype=torch.int64)
        return self.matrix[: n * n].view(n, n)


class MeanIoU(ConfusionMatrix):
    """Mean intersection-over-union over classes from the split's confusion matrix.

    ``absent="skip"``: classes absent from both targets and predictions are left out of the mean;
    ``absent="nan"``: they make the result NaN (MTAN / Nash-MTL ``ConfMatrix``)."""

    name = "miou"
    higher_is_better = True

    def __init__(self, num_classes: int, absent: str = "skip"):
        if absent not in ("skip", "nan"):
            raise ValueError(f"dataset.miou_absent={absent!r}: choose 'skip' or 'nan'")
        self.absent = absent
        super().__init__(num_classes)

    def compute(self) -> torch.Tensor:
        h = self.confusion().double()
        tp = h.diag()
        union = h.sum(0) + h.sum(1) - tp
        iou = tp / union
        if self.absent == "nan":
            return iou.mean()
        present = union > 0
        return torch.where(present, iou, torch.zeros_like(iou)).sum() / present.sum().clamp_min(1) \
            if bool(present.any()) else torch.tensor(float("nan"), dtype=torch.float64)


class PixelAccuracy(ConfusionMatrix):
    """Fraction of labelled pixels whose arg-max class is the target (trace / total)."""

    name = "pixel_accuracy"
    higher_is_better = True

    def compute(self) -> torch.Tensor:
        h = self.confusion().double()
        total = h.sum()
        return h.diag().sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64)


# ------------------------------------------------------------------------------- depth
class _MaskedSum(MeanMetric):
    """Sum of a per-pixel quantity over valid pixels divided by their count, over the split."""

    def _add(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        self._accumulate(values * mask, mask.sum())


class DepthAbsError(_MaskedSum):
    """Mean ``|pred - gt|`` over valid depth pixels (metres)."""

    name = "abs_error"
    higher_is_better = False

    def __init__(self):
        self.reset()

    def update(self, pred, target):
        _check_dense(pred, target, 1, "depth")
        self._add((pred - target).abs(), depth_mask(target))


class DepthRelError(_MaskedSum):
    """Mean ``|pred - gt| / gt`` over valid depth pixels."""

    name = "rel_error"
    higher_is_better = False

    def __init__(self):
        self.reset()

    def update(self, pred, target):
        _check_dense(pred, target, 1, "depth")
        mask = depth_mask(target)
        safe = torch.where(mask, target, torch.ones_like(target))
        self._add((pred - target).abs() / safe, mask)


# ----------------------------------------------------------------------------- normals
def angle_error_degrees(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel angle (degrees, ``[B, 1, H, W]``) between the normalised prediction and the target."""
    cos = (normalize_normals(pred) * target).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))


class NormalAngleMean(_MaskedSum):
    name = "mean_angle"
    higher_is_better = False

    def __init__(self):
        self.reset()

    def update(self, pred, target):
        _check_dense(pred, target, 3, "normal")
        self._add(angle_error_degrees(pred, target), normal_mask(target))


class NormalWithin(_MaskedSum):
    """Fraction of valid pixels whose angle error is below ``threshold`` degrees."""

    higher_is_better = True

    def __init__(self, threshold: float):
        self.threshold = float(threshold)
        self.name = f"within_{threshold:g}"
        self.reset()

    def update(self, pred, target):
        _check_dense(pred, target, 3, "normal")
        below = (angle_error_degrees(pred, target) < self.threshold).double()
        self._add(below, normal_mask(target))


class NormalAngleMedian(Metric):
    """Exact median angle error over every valid pixel of the split (numpy's convention: the
    mean of the two middle values for an even count). Keeps one float per pixel on the device
    (invalid pixels as +inf) and sorts once in ``compute()``."""

    name = "median_angle"
    higher_is_better = False

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._errors: list[torch.Tensor] = []

    def update(self, pred, target):
        _check_dense(pred, target, 3, "normal")
        err = angle_error_degrees(pred, target).float()
        err = torch.where(normal_mask(target), err, torch.full_like(err, math.inf))
        self._errors.append(err.reshape(-1))

    def compute(self) -> torch.Tensor:
        if not self._errors:
            return torch.tensor(float("nan"), dtype=torch.float64)
        values = torch.cat(self._errors)
        n = int(torch.isfinite(values).sum())
        if n == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        lo_k, hi_k = (n - 1) // 2, n // 2
        lo = torch.kthvalue(values, lo_k + 1).values.double()
        hi = lo if hi_k == lo_k else torch.kthvalue(values, hi_k + 1).values.double()
        return (lo + hi) / 2


# ------------------------------------------------------------------------------- tasks
def segmentation_task(name: str = "segmentation", num_classes: int = 13, absent: str = "skip") -> Task:
    return Task(name=name, loss=segmentation_loss, loss_count=labelled_count, kpi=batch_accuracy, metric_factories=[
        lambda: MeanIoU(num_classes, absent),
        lambda: PixelAccuracy(num_classes),
        lambda: LossMetric(_per_pixel_ce),
    ])


def depth_task(name: str = "depth") -> Task:
    return Task(name=name, loss=depth_loss, loss_count=lambda target: depth_mask(target).sum(), kpi=depth_kpi,
                metric_factories=[DepthAbsError, DepthRelError, lambda: LossMetric(_per_pixel_l1)])


def normal_task(name: str = "normal") -> Task:
    return Task(name=name, loss=normal_loss, loss_count=lambda target: normal_mask(target).sum(), kpi=normal_kpi,
                metric_factories=[NormalAngleMean, NormalAngleMedian,
                                  *[(lambda t=t: NormalWithin(t)) for t in THRESHOLDS],
                                  lambda: LossMetric(_per_pixel_cos)])
