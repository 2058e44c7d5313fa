"""Speed benchmark of the token-selection design: plain ViT (base tokens only) vs MST (top-k
multi-scale tokens) vs every 8x8 and 28x28 token, per preset, with params, FLOPs and latency.

Run ``mst-geo bench speed --presets mst_tiny mst_base --size 448``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from mst_geo.model import create_model

VARIANTS = {"vit": "none", "mst": "topk", "all": "all"}  # name -> MSTConfig.token_selection


def _inputs(size: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image with a positive and a negative click (the selection depends on the clicks only
    through which tokens win, not how many, so any image measures the same cost)."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=generator)
    clicks = torch.tensor([[[size * 0.5, size * 0.4, 1.0], [size * 0.1, size * 0.9, 0.0]]])
    return image.to(device), clicks.to(device), torch.zeros(1, 1, size, size, device=device)


def _latency_ms(model: torch.nn.Module, inputs: tuple, repeats: int, device: str) -> list[float]:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(*inputs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return times


def run_speed_benchmark(presets: tuple[str, ...] = ("mst_tiny", "mst_base"), size: int = 448,
                        repeats: int = 5, warmup: int = 1, device: str = "cpu",
                        threads: int | None = None) -> dict[str, Any]:
    """Measure each preset x variant; returns ``{"rows": [...], "ratios": {...}, ...}`` where a
    row holds tokens, params (M), GFLOPs (one forward) and median/min latency (ms); the ratios
    use the minimum, the latency least disturbed by other processes on a shared machine."""
    if threads is not None:
        torch.set_num_threads(threads)
    inputs = _inputs(size, device)
    num_base = (size // 16) ** 2
    num_candidates = (size // 8) ** 2 + (-(-size // 28)) ** 2
    rows = []
    for preset in tqdm(presets, desc="speed", unit="preset"):
        # topk_min_score=0: always k tokens, the worst case (trained scorers often keep fewer)
        models = {variant: create_model(preset, token_selection=mode, input_size=size, topk_min_score=0.0)
                  .eval().to(device) for variant, mode in VARIANTS.items()}
        times: dict[str, list[float]] = {variant: [] for variant in models}
        flops = {}
        with torch.no_grad():
            for variant, model in models.items():
                _latency_ms(model, inputs, max(warmup, 1), device)  # resampled kernels now cached
                with FlopCounterMode(display=False) as counter:
                    model(*inputs)
                flops[variant] = counter.get_total_flops()
            for _ in range(repeats):  # interleaved, so load from other processes hits all alike
                for variant, model in models.items():
                    times[variant] += _latency_ms(model, inputs, 1, device)
        for variant, model in models.items():
            extra = 0 if variant == "vit" else model.backbone.num_selected(num_base, num_candidates)
            rows.append({
                "preset": preset, "variant": variant, "tokens": num_base + extra,
                "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                "gflops": round(flops[variant] / 1e9, 2),
                "latency_ms": round(statistics.median(times[variant]), 1),
                "latency_ms_min": round(min(times[variant]), 1),
            })
    by_key = {(row["preset"], row["variant"]): row for row in rows}
    def ratio(preset: str, slower: str, faster: str) -> float:
        return round(by_key[preset, slower]["latency_ms_min"] / by_key[preset, faster]["latency_ms_min"], 3)

    ratios = {preset: {"mst_over_vit": ratio(preset, "mst", "vit"), "all_over_mst": ratio(preset, "all", "mst")}
              for preset in presets}
    return {"size": size, "device": device, "threads": torch.get_num_threads(), "repeats": repeats,
            "rows": rows, "ratios": ratios}


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of ``run_speed_benchmark`` output."""
    lines = [f"Forward at {result['size']}x{result['size']} on {result['device']} "
             f"({result['threads']} threads, {result['repeats']} interleaved runs; ratios use the minimum,",
             "the least disturbed by other processes)", "",
             "| preset | variant | tokens | params (M) | GFLOPs | latency ms (median / min) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['preset']} | {row['variant']} | {row['tokens']} | {row['params_m']} | "
                     f"{row['gflops']} | {row['latency_ms']} / {row['latency_ms_min']} |")
    lines.append("")
    for preset, ratio in result["ratios"].items():
        lines.append(f"{preset}: MST / ViT latency {ratio['mst_over_vit']}x, "
                     f"all tokens / MST {ratio['all_over_mst']}x (min)")
    return "\n".join(lines)
