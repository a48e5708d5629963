"""The PyTorch reference of `cxrjax bench`: the same architectures from torchvision / timm, trained on the same
synthetic batch, timed the same way.

Why a module of its own, run as `python -m cxrjax.bench_torch ... ` in a child process of the benchmark: JAX and
PyTorch in one process would share (and fight over) CPU threads and accelerator memory, so each reference run gets a
fresh process and prints one JSON object on stdout. What the step does mirrors `cxrjax.training.train.train_step`: uint8
grayscale pixels arrive on the device and are normalised there (ImageNet statistics, repeated to 3 channels, as
`cxrjax.models.preprocess.normalize`), then forward in channels-last layout (under bf16 autocast for bfloat16), BCE with
logits in float32 summed over findings (cxrjax's "bce"), backward and an Adam update. Modes: `eager`, and `compile`
(`torch.compile` of the model, the usual way to compile a training step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from cxrjax.data.findings import NUM_FINDINGS
from cxrjax.models.preprocess import IMAGENET_MEAN, IMAGENET_STD

MODES = ("eager", "compile")
TORCHVISION_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet161",
                      "densenet169", "densenet201")
TIMM_MODELS = {"swin_tiny": "swin_tiny_patch4_window7_224", "swin_small": "swin_small_patch4_window7_224",
               "swin_base": "swin_base_patch4_window7_224"}  # cxrjax backbone name → timm model name


def build_model(name: str, size: int) -> torch.nn.Module:
    """The torchvision / timm model with cxrjax's architecture of the same name, randomly initialised, 14 outputs."""
    if name in TORCHVISION_MODELS:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=NUM_FINDINGS)
    if name in TIMM_MODELS:
        import timm

        return timm.create_model(TIMM_MODELS[name], pretrained=False, num_classes=NUM_FINDINGS, img_size=size)
    raise ValueError(f"no PyTorch reference for {name!r}; known: {', '.join([*TORCHVISION_MODELS, *TIMM_MODELS])}")


def make_train_step(model: torch.nn.Module, device: torch.device, bfloat16: bool, mode: str):
    """`step(images uint8 [B, 1, H, W], labels uint8 [B, 14]) -> loss`: normalise, forward, BCE, backward, Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if mode == "compile" else model
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    bce = torch.nn.BCEWithLogitsLoss(reduction="none")

    def step(images, labels):
        x = images.float().div(255.0).expand(-1, 3, -1, -1)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bfloat16):
            logits = forward(x)
        loss = bce(logits.float(), labels.float()).sum(dim=1).mean()  # cxrjax's BCE: summed over findings
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(name: str, batch: int, size: int, dtype: str, mode: str, steps: int, warmup: int,
                  seed: int = 0) -> dict:
    """Training images/s (and per CPU-second of this process) after `warmup` steps (the first of which compiles, in
    `compile` mode), on a fixed random batch already on the device, so the figure is the device's and not the input
    pipeline's."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"unknown dtype {dtype!r}; choose float32 or bfloat16")
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(name, size).to(device, memory_format=torch.channels_last).train()
    step = make_train_step(model, device, dtype == "bfloat16", mode)
    generator = torch.Generator(device=device).manual_seed(seed)
    images = torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8, device=device, generator=generator)
    labels = torch.randint(0, 2, (batch, NUM_FINDINGS), dtype=torch.uint8, device=device, generator=generator)

    start = time.perf_counter()
    step(images, labels)
    _synchronize(device)
    first_step_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        step(images, labels)
    _synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step(images, labels)
    _synchronize(device)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"mode": mode, "first_step_s": first_step_s, "step_s": elapsed / steps,
            "images_per_s": batch * steps / elapsed, "images_per_cpu_s": batch * steps / cpu,
            "final_loss": float(loss.detach()), "device": _describe(device), "threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0], "torch": torch.__version__}


def _describe(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    args = parser.parse_args(argv)
    result = time_training(args.model, args.batch, args.size, args.dtype, args.mode, args.steps, args.warmup)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
