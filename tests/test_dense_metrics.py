"""Dense losses and metrics (NYUv2) and CelebA's F1 on hand-made predictions, hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtl_bench.data.celeba import BinaryF1, attribute_task
from mtl_bench.data.dense import (
    DepthAbsError, DepthRelError, MeanIoU, NormalAngleMean, NormalAngleMedian, NormalWithin, PixelAccuracy,
    depth_loss, depth_task, normal_loss, normal_task, segmentation_loss, segmentation_task,
)


def logits(labels, num_classes):
    """One-hot logits [B, C, H, W] whose arg-max is ``labels`` [B, H, W]."""
    labels = torch.as_tensor(labels)
    return F.one_hot(labels.clamp_min(0), num_classes).permute(0, 3, 1, 2).float() * 5.0


def run(metric, batches):
    metric.reset()
    for pred, target in batches:
        metric.update(pred, target)
    return float(metric.compute())


# ------------------------------------------------------------------------ segmentation
# 4 classes; -1 = ignored. Batch 1 and batch 2 of one image each.
T1 = [[[0, 0, 1, -1]]]
P1 = [[[0, 1, 1, 3]]]   # the 3 at the ignored pixel must not count
T2 = [[[1, 2, 2, -1]]]
P2 = [[[1, 2, 2, 0]]]   # the 0 at the ignored pixel must not count


def seg_batches():
    return [(logits(P1, 4), torch.tensor(T1)), (logits(P2, 4), torch.tensor(T2))]


def test_miou_one_confusion_matrix_with_ignored_pixels_and_an_absent_class():
    # valid pixels (target, pred): (0,0) (0,1) (1,1) | (1,1) (2,2) (2,2)
    # class 0: TP 1, FP 0, FN 1 -> 1/2; class 1: TP 2, FP 1, FN 0 -> 2/3; class 2: TP 2 -> 1
    # class 3: absent from targets and (valid-pixel) predictions -> left out ("skip")
    expected = (1 / 2 + 2 / 3 + 1) / 3
    assert run(MeanIoU(4), seg_batches()) == pytest.approx(expected)
    # the official ConfMatrix averages every class: 0/0 for class 3 -> NaN
    assert math.isnan(run(MeanIoU(4, absent="nan"), seg_batches()))
    # per-batch averaging would differ: batch 1 alone gives classes 0 (1/2) and 1 (1/2) -> 0.5
    assert run(MeanIoU(4), seg_batches()[:1]) == pytest.approx(0.5)


def test_miou_counts_a_predicted_class_absent_from_targets_as_zero():
    pred = logits([[[3, 0]]], 4)
    target = torch.tensor([[[0, 0]]])
    # class 0: TP 1, FN 1 -> 1/2; class 3: FP 1 -> 0; classes 1, 2 absent -> skipped
    assert run(MeanIoU(4), [(pred, target)]) == pytest.approx(0.25)
    assert run(MeanIoU(4, absent="nan"), [(logits([[[0, 1, 2, 3]]], 4), torch.tensor([[[0, 1, 2, 3]]]))]) == 1.0


def test_pixel_accuracy_over_labelled_pixels():
    # 5 of 6 labelled pixels correct
    assert run(PixelAccuracy(4), seg_batches()) == pytest.approx(5 / 6)


def test_segmentation_loss_ignores_unlabelled_pixels():
    pred = torch.randn(1, 4, 1, 4)
    target = torch.tensor([[[0, 3, -1, 2]]])
    manual = -(F.log_softmax(pred, 1)[0, [0, 3, 2], 0, [0, 1, 3]]).mean()
    assert segmentation_loss(pred, target) == pytest.approx(float(manual), rel=1e-6)
    assert float(segmentation_loss(pred, torch.full((1, 1, 4), -1))) == 0.0


# ------------------------------------------------------------------------------- depth
def test_depth_errors_on_valid_pixels_only():
    target1 = torch.tensor([[[[2.0, 0.0], [4.0, 1.0]]]])
    pred1 = torch.tensor([[[[3.0, 5.0], [2.0, 1.0]]]])   # the 5 at depth 0 is invalid
    target2 = torch.tensor([[[[0.0, 0.0], [0.0, 8.0]]]])
    pred2 = torch.tensor([[[[9.0, 9.0], [9.0, 4.0]]]])
    # valid abs errors 1, 2, 0 | 4 -> 7 / 4; relative 1/2, 2/4, 0 | 4/8 -> 1.5 / 4
    batches = [(pred1, target1), (pred2, target2)]
    assert run(DepthAbsError(), batches) == pytest.approx(7 / 4)
    assert run(DepthRelError(), batches) == pytest.approx(1.5 / 4)
    assert float(depth_loss(pred1, target1)) == pytest.approx(3 / 3)


# ------------------------------------------------------------------------------ normals
def unit(deg):
    """A unit vector at ``deg`` degrees from +z in the x-z plane."""
    r = math.radians(deg)
    return [math.sin(r), 0.0, math.cos(r)]


def normal_batch(angles, invalid=0):
    """Targets +z, predictions at the given angles (scaled by 3: must be normalised), plus
    ``invalid`` pixels with an all-zero target and an arbitrary prediction."""
    n = len(angles) + invalid
    target = torch.zeros(1, 3, 1, n)
    pred = torch.zeros(1, 3, 1, n)
    for i, a in enumerate(angles):
        target[0, :, 0, i] = torch.tensor([0.0, 0.0, 1.0])
        pred[0, :, 0, i] = 3.0 * torch.tensor(unit(a))
    for i in range(len(angles), n):
        pred[0, :, 0, i] = torch.tensor([1.0, 0.0, 0.0])
    return pred, target


def test_normal_angle_statistics():
    batches = [normal_batch([0, 10, 20], invalid=2), normal_batch([45, 90])]
    # angles 0, 10, 20, 45, 90 -> mean 33, median 20, <11.25: 2/5, <22.5: 3/5, <30: 3/5
    assert run(NormalAngleMean(), batches) == pytest.approx(33.0, abs=1e-4)
    assert run(NormalAngleMedian(), batches) == pytest.approx(20.0, abs=1e-4)
    assert run(NormalWithin(11.25), batches) == pytest.approx(2 / 5)
    assert run(NormalWithin(22.5), batches) == pytest.approx(3 / 5)
    assert run(NormalWithin(30), batches) == pytest.approx(3 / 5)
    # an even count: the mean of the two middle values (numpy's median), over the whole split
    batches.append(normal_batch([60], invalid=1))
    assert run(NormalAngleMedian(), batches) == pytest.approx((20 + 45) / 2, abs=1e-4)
    all_angles = [0, 10, 20, 45, 90, 60]
    assert run(NormalAngleMedian(), batches) == pytest.approx(float(np.median(all_angles)), abs=1e-4)


def test_normal_loss_normalises_predictions_and_masks_invalid_pixels():
    pred, target = normal_batch([0, 60], invalid=1)
    # 1 - mean(cos 0, cos 60) = 1 - 0.75
    assert float(normal_loss(pred, target)) == pytest.approx(0.25, abs=1e-6)


def test_task_metric_names_and_directions():
    assert segmentation_task().metric_directions == {"miou": True, "pixel_accuracy": True, "loss": False}
    assert depth_task().metric_directions == {"abs_error": False, "rel_error": False, "loss": False}
    assert normal_task().metric_directions == {
        "mean_angle": False, "median_angle": False, "within_11.25": True, "within_22.5": True,
        "within_30": True, "loss": False}


# ------------------------------------------------------------------------------ CelebA F1
def test_binary_f1_error_and_accuracy():
    target = torch.tensor([1, 1, 0, 0, 1, -1])
    pred = F.one_hot(torch.tensor([1, 0, 1, 0, 1, 1]), 2).float()
    # TP 2, FP 1, FN 1 (the last example is unlabelled) -> F1 = 4 / 6
    assert run(BinaryF1(), [(pred[:3], target[:3]), (pred[3:], target[3:])]) == pytest.approx(4 / 6)
    metrics = {m.name: m for m in attribute_task("Smiling").new_metrics()}
    for m in metrics.values():
        m.update(pred, target)
    assert float(metrics["error"].compute()) == pytest.approx(40.0)
    assert float(metrics["accuracy"].compute()) == pytest.approx(0.6)
    # no positives and none predicted: 0 (scikit-learn's zero_division default)
    assert run(BinaryF1(), [(F.one_hot(torch.tensor([0, 0]), 2).float(), torch.tensor([0, 0]))]) == 0.0


def test_kpis_are_accuracy_like_shares_of_the_valid_pixels():
    """dtp's KPIs in [0, 1]: pixel accuracy; depth's delta_1 (max(pred/gt, gt/pred) < 1.25); the
    share of normals within 11.25 degrees; invalid pixels never count."""
    seg = segmentation_task()
    label = torch.tensor([[[0, 1, -1, 2]]])
    assert seg.kpi(logits([[[0, 2, 1, 2]]], 13), label).item() == pytest.approx(2 / 3)  # 2 of the 3 labelled

    gt = torch.tensor([[[[1.0, 2.0, 4.0, 0.0, 3.0]]]])  # the fourth pixel is invalid
    pred = torch.tensor([[[[1.2, 1.5, 5.1, 9.0, -1.0]]]])  # ratios 1.2, 1.33, 1.275, -, negative
    assert depth_task().kpi(pred, gt).item() == pytest.approx(1 / 4)

    up = torch.tensor([0.0, 0.0, 1.0])
    tilted = lambda deg: torch.tensor([math.sin(math.radians(deg)), 0.0, math.cos(math.radians(deg))])  # noqa: E731
    target = torch.stack([up, up, up, torch.zeros(3)], dim=1).reshape(1, 3, 1, 4)
    pred = torch.stack([2 * tilted(5), tilted(11), tilted(12), up], dim=1).reshape(1, 3, 1, 4)  # unnormalised first
    assert normal_task().kpi(pred, target).item() == pytest.approx(2 / 3)


def test_classification_and_regression_kpis_on_hand_made_batches():
    """Accuracy over the labelled examples only (0 when none is labelled); exp(-MSE / scale) with
    the MSE over every element (a 2-column target counts both columns)."""
    from mtl_bench.data.tasks import classification_task, regression_task

    task = classification_task("digit")
    scores = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert task.kpi(scores, torch.tensor([1, 1, -1])).item() == pytest.approx(1 / 2)
    assert task.kpi(scores, torch.tensor([-1, -1, -1])).item() == 0.0
    pred, target = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.zeros(2, 2)
    assert regression_task("r", scale=4.0).kpi(pred, target).item() == pytest.approx(math.exp(-7.5 / 4))
    assert task.kpi.sums(scores, torch.tensor([1, 1, -1])).tolist() == [1.0, 2.0]  # what a data-parallel run adds up


def test_ratio_kpi_divides_by_any_positive_denominator_and_gives_zero_for_none():
    """A user's RatioKPI: a denominator that is no count (a weight below 1) divides as it is; an
    empty denominator gives the ratio 0, to which ``finish`` applies (exp(-0) = 1)."""
    from mtl_bench.data.tasks import RatioKPI

    weighted = RatioKPI(lambda pred, target: torch.stack([pred.sum(), target.sum()]))
    assert weighted(torch.tensor([0.2]), torch.tensor([0.4])).item() == pytest.approx(0.5)
    assert weighted(torch.tensor([0.0]), torch.tensor([0.0])).item() == 0.0
    finished = RatioKPI(lambda pred, target: torch.stack([pred.sum(), target.sum()]), lambda r: torch.exp(-r))
    assert finished(torch.tensor([0.0]), torch.tensor([0.0])).item() == 1.0
