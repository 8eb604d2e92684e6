"""Builders of the dense-prediction models (NYUv2): ``model=segnet`` and ``model=resnet50_dilated``."""
from __future__ import annotations

from .multitask import MultiTaskModel

# output channels of each dense task (segmentation gets the benchmark's class count)
DENSE_CHANNELS = {"depth": 1, "normal": 3}


def task_channels(benchmark) -> dict[str, int]:
    channels = {}
    for task in benchmark.task_names:
        if task == "segmentation":
            channels[task] = int(benchmark.info.get("num_classes", 13))
        elif task in DENSE_CHANNELS:
            channels[task] = DENSE_CHANNELS[task]
        else:
            raise ValueError(f"dense models predict segmentation, depth and normal; task {task!r} is not one of them")
    return channels


def build_dense_model(cfg, benchmark) -> MultiTaskModel:
    size = benchmark.info.get("image_size")
    if cfg.name == "segnet":
        from .segnet import build_segnet

        return build_segnet(task_channels(benchmark), cfg.get("variant", "standard"))
    if cfg.name == "resnet50_dilated":
        from .resnet_dense import OUTPUT_STRIDE, build_resnet50_dilated

        if size and any(int(s) % OUTPUT_STRIDE for s in size):
            raise ValueError(f"model=resnet50_dilated needs an input size divisible by {OUTPUT_STRIDE}, "
                             f"got dataset.image_size={list(size)}")
        n, bs = benchmark.info.get("num_train"), benchmark.info.get("batch_size")
        if n and bs and n % bs == 1 and not benchmark.info.get("drop_last"):
            raise ValueError(
                f"model=resnet50_dilated: {n} training images in batches of {bs} leave a last batch of one image, "
                "on which the ASPP image-pooling BatchNorm cannot train; set dataset.drop_last=true "
                "or another trainer.batch_size")
        return build_resnet50_dilated(task_channels(benchmark), bool(cfg.get("pretrained", False)))
    raise ValueError(f"unknown dense model {cfg.name!r}")
