"""Tasks and their metrics.

A :class:`Task` couples a name, a scalar loss ``loss(pred, target)`` and a set of metrics.
Metrics accumulate on the device (tensor sums, no ``.item()`` per batch) and are read once per
evaluation, so evaluating never syncs the host inside the loop.

Targets of a task may mark unlabelled examples with :data:`IGNORE` (-1): their loss and
metrics skip them (the label-fraction study of Gong et al. 2019 relies on this).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

IGNORE = -1


class Metric:
    """A metric accumulated over a split: ``reset()``, ``update(pred, target)`` per batch,
    ``compute()`` -> 0-dim tensor at the end. ``higher_is_better`` orients Delta_m and ranks."""

    name: str = "metric"
    higher_is_better: bool = False

    def reset(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    def compute(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class MeanMetric(Metric):
    """Mean of a per-example quantity over the labelled examples of the split."""

    def reset(self) -> None:
        self._total = None
        self._count = None

    def _accumulate(self, values: torch.Tensor, count: torch.Tensor) -> None:
        total = values.sum().detach().double()
        count = count.detach().double()
        if self._total is None:
            self._total, self._count = total, count
        else:
            self._total = self._total + total
            self._count = self._count + count

    def compute(self) -> torch.Tensor:
        """The mean, or NaN when nothing was counted (no labelled example, no valid pixel)."""
        if self._total is None:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return torch.where(self._count > 0, self._total / self._count.clamp_min(1),
                           torch.full_like(self._total, float("nan")))


class Accuracy(MeanMetric):
    """Fraction of labelled examples whose arg-max class equals the target."""

    name = "accuracy"
    higher_is_better = True

    def update(self, pred, target):
        mask = target != IGNORE
        correct = (pred.argmax(dim=1) == target) & mask
        self._accumulate(correct, mask.sum())


class ErrorRate(MeanMetric):
    """Percentage of labelled examples misclassified (CelebA's per-attribute error %)."""

    name = "error"
    higher_is_better = False

    def update(self, pred, target):
        mask = target != IGNORE
        wrong = (pred.argmax(dim=1) != target) & mask
        self._accumulate(wrong.double() * 100.0, mask.sum())


class LossMetric(MeanMetric):
    """The task's own loss, averaged over labelled examples of the split."""

    name = "loss"
    higher_is_better = False

    def __init__(self, per_example_loss: Callable[[torch.Tensor, torch.Tensor], tuple]):
        self.per_example_loss = per_example_loss
        self.reset()

    def update(self, pred, target):
        values, count = self.per_example_loss(pred, target)
        self._accumulate(values, count)


class MeanSquaredError(MeanMetric):
    """Mean squared error per output element, optionally divided by ``scale``
    (``scale = sigma_i^2`` gives the scale-normalised loss of the GradNorm toy problem)."""

    higher_is_better = False

    def __init__(self, name: str = "mse", scale: float = 1.0):
        self.name = name
        self.scale = float(scale)
        self.reset()

    def update(self, pred, target):
        err = (pred - target).pow(2) / self.scale
        # a count filled on the device: torch.tensor(n, device=cuda) would copy from the host each batch
        self._accumulate(err, torch.full((), err.numel(), device=err.device, dtype=torch.float64))


def classification_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over labelled examples; 0 (not NaN) for a batch with none."""
    summed = F.cross_entropy(pred, target, ignore_index=IGNORE, reduction="sum")
    return summed / (target != IGNORE).sum().clamp_min(1)


def _per_example_ce(pred, target):
    values = F.cross_entropy(pred, target, ignore_index=IGNORE, reduction="none")
    return values, (target != IGNORE).sum()


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every output element."""
    return F.mse_loss(pred, target)


@dataclass
class Task:
    """One task of a benchmark: its loss and the factories of its metrics.

    ``metric_factories`` builds fresh metric objects for each evaluation; the first metric is
    the task's primary metric (used by default for model selection and tables).
    """

    name: str
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric_factories: Sequence[Callable[[], Metric]] = field(default_factory=list)
    #: batch KPI in [0, 1] (higher is better) as a 0-dim tensor on the device, for strategies that
    #: weight tasks by performance (DTP); None: the task has none
    kpi: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    #: the number of elements ``loss`` averages over for a target (labelled examples, valid pixels),
    #: a 0-dim tensor; None: the batch's examples. Data-parallel runs weight the shards' losses by it.
    loss_count: Callable[[torch.Tensor], torch.Tensor] | None = None

    def new_metrics(self) -> list[Metric]:
        metrics = [factory() for factory in self.metric_factories]
        for metric in metrics:
            metric.reset()
        return metrics

    @property
    def metric_directions(self) -> dict[str, bool]:
        """metric name -> higher_is_better."""
        return {m.name: m.higher_is_better for m in self.new_metrics()}


class RatioKPI:
    """A batch KPI that is a function of a ratio of two sums over the batch's elements,
    ``finish(numerator / denominator)`` (accuracy: correct over labelled examples; ``exp(-MSE)``:
    squared errors over elements). ``sums(pred, target)`` gives the [2] tensor ``(numerator,
    denominator)`` of a batch or of a shard of one (integer counts stay integers, so that shards'
    counts add exactly): a data-parallel run adds the shards' sums (one all-reduce of 2 numbers per
    task) instead of gathering every prediction. Called, it is the KPI of one batch, a 0-dim
    tensor on the device; where the denominator is 0 (nothing labelled) the ratio is 0, then
    ``finish`` applies."""

    def __init__(self, sums: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 finish: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.sums = sums
        self.finish = finish

    def from_sums(self, sums: torch.Tensor) -> torch.Tensor:
        if not sums.is_floating_point():  # counts: float32, as the ratio's
            sums = sums.float()
        numerator, denominator = sums[0], sums[1]
        some = denominator > 0
        ratio = torch.where(some, numerator / torch.where(some, denominator, torch.ones_like(denominator)), 0.0)
        return ratio if self.finish is None else self.finish(ratio)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.from_sums(self.sums(pred, target))


def _accuracy_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mask = target != IGNORE
    correct = ((pred.argmax(dim=1) == target) & mask).sum()
    return torch.stack([correct, mask.sum()])


#: accuracy over the labelled examples (pixels) of a batch, in [0, 1]
batch_accuracy = RatioKPI(_accuracy_sums)


def _squared_error_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    errors = F.mse_loss(pred, target, reduction="sum")
    errors = errors.to(torch.promote_types(errors.dtype, torch.float32))  # never a bf16 sum
    # a fill on the device, not a host number copied to it (a copy would wait for the device)
    return torch.stack([errors, torch.full((), pred.numel(), dtype=errors.dtype, device=errors.device)])


def regression_kpi(scale: float) -> RatioKPI:
    """``exp(-MSE / scale)`` in (0, 1]: 1 for a perfect fit (a KPI for DTP on regression tasks)."""
    return RatioKPI(_squared_error_sums, lambda mse: torch.exp(-mse / scale))


def labelled_count(target: torch.Tensor) -> torch.Tensor:
    """The labelled elements of a target (``!= IGNORE``): what a masked loss averages over."""
    return (target != IGNORE).sum()


def classification_task(name: str, error: bool = False) -> Task:
    """A classification task: cross-entropy loss; accuracy (and error %) and loss metrics."""
    factories: list[Callable[[], Metric]] = [Accuracy]
    if error:
        factories.append(ErrorRate)
    factories.append(lambda: LossMetric(_per_example_ce))
    return Task(name=name, loss=classification_loss, metric_factories=factories, kpi=batch_accuracy,
                loss_count=labelled_count)


def regression_task(name: str, scale: float = 1.0) -> Task:
    """A regression task: MSE loss; metrics MSE and the scale-normalised loss MSE/scale."""
    return Task(
        name=name,
        loss=regression_loss,
        metric_factories=[
            lambda: MeanSquaredError("normalized_loss", scale=scale),
            lambda: MeanSquaredError("mse"),
        ],
        kpi=regression_kpi(scale),
    )
