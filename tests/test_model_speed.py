"""The speed benchmark measures what it claims: token counts, FLOPs ordering, positive latencies."""

from __future__ import annotations

import torch

from mst_geo.bench.speed import format_table, run_speed_benchmark


def test_speed_benchmark_compares_the_three_token_sets():
    torch.set_num_threads(1)
    result = run_speed_benchmark(("mst_tiny",), size=64, repeats=1, warmup=0)
    rows = {row["variant"]: row for row in result["rows"]}
    # 64 px: 4x4 base tokens, k = round(16/16) = 1, all = 8x8 fine + 3x3 coarse (64 px padded to 84)
    assert [rows[v]["tokens"] for v in ("vit", "mst", "all")] == [16, 17, 16 + 64 + 9]
    assert rows["vit"]["gflops"] < rows["mst"]["gflops"] < rows["all"]["gflops"]
    assert rows["vit"]["params_m"] == rows["mst"]["params_m"] == rows["all"]["params_m"]
    assert all(row["latency_ms_min"] > 0 for row in rows.values())
    assert "mst_tiny: MST / ViT latency" in format_table(result)
