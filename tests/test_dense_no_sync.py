"""Dense losses, the KPIs (dtp) and the update() of every NYUv2 and CelebA metric read nothing back to the host
(no aten::_local_scalar_dense / item / is_nonzero: each would stall the GPU stream per batch)."""
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mtl_bench.data.celeba import attribute_task
from mtl_bench.data.dense import depth_task, normal_task, segmentation_task

HOST_READS = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero"}


def test_dense_and_attribute_losses_and_metric_updates_do_not_sync():
    g = torch.Generator().manual_seed(0)
    b, h, w = 2, 8, 12
    label = torch.randint(-1, 13, (b, h, w), generator=g)
    depth = torch.rand(b, 1, h, w, generator=g) * (torch.rand(b, 1, h, w, generator=g) > 0.2)
    normal = F.normalize(torch.randn(b, 3, h, w, generator=g), dim=1) * (torch.rand(b, 1, h, w, generator=g) > 0.2)
    attr = torch.randint(-1, 2, (16,), generator=g)
    cases = [
        (segmentation_task(), torch.randn(b, 13, h, w, generator=g), label),
        (depth_task(), torch.rand(b, 1, h, w, generator=g), depth),
        (normal_task(), torch.randn(b, 3, h, w, generator=g), normal),
        (attribute_task("Smiling"), torch.randn(16, 2, generator=g), attr),
    ]
    metrics = [(task.new_metrics(), pred, target) for task, pred, target in cases]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for (task, pred, target), (ms, _, _) in zip(cases, metrics):
            task.loss(pred, target)
            task.kpi(pred, target)
            for _ in range(2):
                for m in ms:
                    m.update(pred, target)
    reads = [e.name for e in prof.events() if e.name in HOST_READS]
    assert reads == [], f"host reads in losses / KPIs / metric updates: {reads}"
    for ms, _, _ in metrics:  # compute() (once per split) may read; it must still work
        for m in ms:
            assert torch.isfinite(m.compute().double()).all()
