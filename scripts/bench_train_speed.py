"""Training throughput (samples/s) of MST beside a plain timm ViT of the same size, in one run.

Each row times full optimiser steps (forward, loss, backward, AdamW step) on batches drawn by the
real training pipeline (COCO_MVal images, sampler clicks) at the given resolution: the timm ViT
(``vit_tiny/base_patch16``, features only, mean-feature loss: the floor any ViT pays), MST with
token selection off (our neck, head and click embedding around the plain ViT) and MST as trained
(multi-scale tokens, top-k). bf16 autocast on CUDA, fp32 on CPU. Also reports how many samples/s
one data-loading process delivers. The iterative-training rounds (0-3 extra no-grad forwards per
batch) are left out: every model pays them alike. Results go to stdout and
``<out>/train_speed.json``.

Example:
    python scripts/bench_train_speed.py --device cuda --batch-size 16 --steps 20
    python scripts/bench_train_speed.py --device cpu --batch-size 2 --steps 2 --presets mst_tiny
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path

import timm
import torch

from mst_geo.clicks.sampler import MultiPointSampler
from mst_geo.model import MSTLoss, create_model
from mst_geo.train.config import DataSection
from mst_geo.train.instances import build_split
from mst_geo.train.samples import ClickSampleSet, IsegObjects, SampleRecipe

PLAIN_VIT = {"mst_tiny": "vit_tiny_patch16_224", "mst_small": "vit_small_patch16_224",
             "mst_base": "vit_base_patch16_224", "mst_large": "vit_large_patch16_224"}


def real_batches(root: Path, size: int, batch_size: int, count: int) -> tuple[list[dict], float]:
    """``count`` training batches from the real pipeline, and its samples/s in this process."""
    train, _ = build_split(root, ["COCO_MVal"], 0.05, max_images=64)
    dataset = ClickSampleSet(IsegObjects(train), SampleRecipe.from_config(
        DataSection(crop_size=size, min_object_area=1000)), MultiPointSampler(), seed=0)
    start = time.perf_counter()
    items = [dataset[i] for i in range(batch_size * count)]
    rate = len(items) / (time.perf_counter() - start)
    batches = [torch.utils.data.default_collate(items[i * batch_size:(i + 1) * batch_size])
               for i in range(count)]
    return batches, rate


def time_steps(model: torch.nn.Module, step, batches: list[dict], warmup: int,
               device: torch.device) -> float:
    """Samples per second of ``step(model, batch)`` + AdamW, after ``warmup`` untimed steps."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    moved = [{k: v.to(device) for k, v in b.items()} for b in batches]
    timed, start = 0, 0.0
    for index, batch in enumerate(moved):
        if index == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast:
            loss = step(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        timed += len(batch["image"]) if index >= warmup else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return timed / (time.perf_counter() - start)


def mst_step(loss_fn: MSTLoss):
    def step(model, batch):
        image = batch["image"].float() / 255
        output = model(image, batch["clicks"], torch.zeros_like(batch["target"]))
        return loss_fn(output, batch["target"], batch["clicks"], batch["ignore"])[0]
    return step


def vit_step(model, batch):
    return model.forward_features(batch["image"].float() / 255).float().pow(2).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=448, help="square input side in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--presets", default="mst_tiny,mst_base")
    parser.add_argument("--data-root", default="../shared/data/iseg")
    parser.add_argument("--out", default="bench_out")
    args = parser.parse_args()

    device = torch.device(args.device)
    batches, data_rate = real_batches(Path(args.data_root), args.size, args.batch_size,
                                      args.warmup + args.steps)
    rows = []
    for preset in [p.strip() for p in args.presets.split(",")]:
        contenders = {
            f"timm {PLAIN_VIT[preset]}": (
                lambda preset=preset: timm.create_model(PLAIN_VIT[preset], img_size=args.size,
                                                        num_classes=0),
                vit_step),
            f"{preset} (no token selection)": (
                lambda preset=preset: create_model(preset, input_size=args.size,
                                                   token_selection="none"),
                mst_step(MSTLoss())),
            f"{preset} (MST, top-k)": (
                lambda preset=preset: create_model(preset, input_size=args.size),
                mst_step(MSTLoss())),
        }
        plain = None
        for name, (build, step) in contenders.items():
            torch.manual_seed(0)
            rate = time_steps(build(), step, batches, args.warmup, device)
            plain = plain or rate
            rows.append({"preset": preset, "model": name, "samples_per_s": round(rate, 3),
                         "vs_plain_vit": round(rate / plain, 3)})
            print(f"{name:42s} {rate:9.2f} samples/s  ({rate / plain:.0%} of the plain ViT)",
                  flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"{torch.get_num_threads()} CPU threads ({platform.processor() or platform.machine()})")
    print(f"data pipeline: {data_rate:.1f} samples/s per loading process at {args.size} px")
    report = {"device": hardware, "size": args.size, "batch_size": args.batch_size,
              "timed_steps": args.steps, "precision": "bf16-mixed" if device.type == "cuda" else "fp32",
              "data_samples_per_s_per_worker": round(data_rate, 2), "rows": rows,
              "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / 'train_speed.json'} ({hardware})")


if __name__ == "__main__":
    main()
