"""Benchmark outputs from the per-instance rows: JSON, CSV, Markdown tables and plots.

Everything is recomputed from ``instances.jsonl`` and written atomically (temp file + rename),
so a report is always complete and matches the rows it came from. Besides the per-dataset
summary, every dataset is broken down by object size at native resolution (small < 32² px,
medium, large > 256² px): the question that matters most for remote sensing, where one scene
holds both single houses and whole lakes.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mst_geo.atomic import write_atomic, write_text_atomic
from mst_geo.bench.loop import InstanceResult
from mst_geo.bench.noc import summarize
from mst_geo.clicks.session import clicks_to_reach, threshold_key
from mst_geo.data.rs import SIZE_CLASSES, size_class
from mst_geo.errors import MSTGeoError

MIOU_AT = (1, 3, 5, 10)
"""Clicks after which the tables report mIoU."""


def _group(rows: Sequence[InstanceResult], key: Callable[[InstanceResult], tuple]) -> dict[tuple, list[InstanceResult]]:
    groups: dict[tuple, list[InstanceResult]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return dict(groups)


def _summary(rows: list[InstanceResult], thresholds: Sequence[float], max_clicks: int) -> dict:
    summary = summarize([r.ious for r in rows], thresholds, max_clicks)
    summary["seconds_per_click"] = float(np.mean([s for r in rows for s in r.seconds]))
    return summary


def summarize_rows(rows: Sequence[InstanceResult], thresholds: Sequence[float], max_clicks: int) -> dict:
    """``{method: {dataset: summary}}``, each summary also holding ``by_size`` {class: summary}."""
    results: dict[str, dict[str, dict]] = defaultdict(dict)
    for (method, dataset), group in _group(rows, lambda r: (r.method, r.dataset)).items():
        summary = _summary(group, thresholds, max_clicks)
        by_size = _group(group, lambda r: (size_class(r.area),))
        summary["by_size"] = {
            size: _summary(by_size[(size,)], thresholds, max_clicks) for size in SIZE_CLASSES if (size,) in by_size
        }
        results[method][dataset] = summary
    return dict(results)


def common_rows(rows: Sequence[InstanceResult]) -> list[InstanceResult]:
    """Only the instances that every method has finished: a fair table from a partial run."""
    methods = {row.method for row in rows}
    return [
        row
        for group in _group(rows, lambda r: (r.dataset, r.name)).values()
        if {r.method for r in group} == methods
        for row in group
    ]


def _columns(thresholds: Sequence[float], max_clicks: int) -> list[str]:
    keys = [threshold_key(t) for t in thresholds]
    return (
        [f"NoC@{k}" for k in keys]
        + [f"NoF@{k}" for k in keys]
        + [f"mIoU@{c}" for c in MIOU_AT if c <= max_clicks]
        + ["s/click"]
    )


def _cells(summary: dict, thresholds: Sequence[float], max_clicks: int) -> list[str]:
    keys = [threshold_key(t) for t in thresholds]
    return (
        [f"{summary['noc'][k]:.2f}" for k in keys]
        + [str(summary["nof"][k]) for k in keys]
        + [f"{summary['miou'][c - 1]:.3f}" for c in MIOU_AT if c <= max_clicks]
        + [f"{summary['seconds_per_click']:.3f}"]
    )


def _table_rows(results: dict, thresholds: Sequence[float], max_clicks: int, by_size: bool) -> list[list[str]]:
    """Rows sorted by dataset, (size class, small first,) method."""
    keyed = []
    for method, per_dataset in results.items():
        for dataset, summary in per_dataset.items():
            if by_size:
                for size, part in summary["by_size"].items():
                    cells = [dataset, size, method, str(part["n"])] + _cells(part, thresholds, max_clicks)
                    keyed.append(((dataset, SIZE_CLASSES.index(size), method), cells))
            else:
                cells = [dataset, method, str(summary["n"])] + _cells(summary, thresholds, max_clicks)
                keyed.append(((dataset, 0, method), cells))
    return [cells for _, cells in sorted(keyed)]


def _csv_text(header: list[str], table: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(table)
    return buffer.getvalue()


def markdown_table(header: list[str], table: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    return "\n".join(lines) + "\n"


def _instance_table(rows: Sequence[InstanceResult], thresholds: Sequence[float], max_clicks: int) -> tuple[list[str], list[list[str]]]:
    keys = [threshold_key(t) for t in thresholds]
    header = ["method", "dataset", "name", "image_id", "area_px", "size"] + [f"NoC@{k}" for k in keys]
    header += [f"IoU@{c}" for c in MIOU_AT if c <= max_clicks] + ["s/click"]
    table = [
        [r.method, r.dataset, r.name, r.image_id, str(r.area), size_class(r.area)]
        + [str(clicks_to_reach(r.ious, t, max_clicks)) for t in thresholds]
        + [f"{r.ious[c - 1]:.4f}" for c in MIOU_AT if c <= max_clicks]
        + [f"{np.mean(r.seconds):.4f}"]
        for r in rows
    ]
    return header, table


def _plot_curves(path: Path, panels: dict[str, dict[str, list[float]]], title: str) -> None:
    """One panel per key of ``panels`` (three per row), one mIoU-vs-clicks line per method in each.

    Drawn on a bare ``Figure`` (no pyplot), so it neither switches the backend nor leaves figures
    open in the caller's session: a notebook that runs the bench keeps its inline plots.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, (panel, curves) in zip(axes.flat, panels.items()):
        for method, curve in sorted(curves.items()):
            axis.plot(range(1, len(curve) + 1), curve, marker=".", label=method)
        axis.set(title=panel, xlabel="clicks", ylabel="mIoU", ylim=(0, 1))
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no click 1.5 on a short run's axis
        axis.grid(alpha=0.3)
    axes.flat[0].legend(loc="lower right", fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    write_atomic(path, lambda temp: figure.savefig(temp, dpi=110, format="png"))


def _panels(results: dict, sizes: Sequence[str] | None) -> dict[str, dict[str, list[float]]]:
    """Plot panels ``"<dataset>[ <size>] (n=..)" -> {method: mIoU curve}``, per dataset or per
    dataset and size class."""
    panels: dict[str, dict[str, list[float]]] = {}
    for dataset in sorted({d for per_dataset in results.values() for d in per_dataset}):
        for size in sizes or [None]:
            curves, count = {}, 0
            for method, per_dataset in results.items():
                summary = per_dataset.get(dataset, {})
                part = summary if size is None else summary.get("by_size", {}).get(size)
                if part:
                    curves[method], count = part["miou"], max(count, part["n"])
            if curves:
                panels[f"{dataset}{'' if size is None else ' ' + size} (n={count})"] = curves
    return panels


def write_report(
    rows: Sequence[InstanceResult],
    out_dir: str | Path,
    thresholds: Sequence[float],
    max_clicks: int,
    settings: dict,
) -> dict:
    """Write results.json/.csv/.md, instances.csv, sizes.csv/.md and the two plots; return the summary.

    ``settings`` (data root, protocol options, methods) is recorded in results.json and the
    Markdown so every number says how it was made.
    """
    out_dir = Path(out_dir)
    if not rows:
        raise MSTGeoError("no object to report: the datasets, --limit and --shard leave none with a valid pixel to find", out_dir)
    results = summarize_rows(rows, thresholds, max_clicks)
    columns = _columns(thresholds, max_clicks)
    main_header, main_table = ["dataset", "method", "n"] + columns, _table_rows(results, thresholds, max_clicks, False)
    size_header, size_table = ["dataset", "size", "method", "n"] + columns, _table_rows(results, thresholds, max_clicks, True)

    write_text_atomic(out_dir / "results.json", json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    write_text_atomic(out_dir / "results.csv", _csv_text(main_header, main_table))
    write_text_atomic(out_dir / "sizes.csv", _csv_text(size_header, size_table))
    write_text_atomic(out_dir / "instances.csv", _csv_text(*_instance_table(rows, thresholds, max_clicks)))
    settings_line = ", ".join(f"{k}={v}" for k, v in settings.items())
    write_text_atomic(
        out_dir / "results.md",
        f"Protocol: RITM clicker, up to {max_clicks} clicks; {settings_line}\n\n"
        + markdown_table(main_header, main_table)
        + "\nBy object size (small < 32² px, large > 256² px, at native resolution):\n\n"
        + markdown_table(size_header, size_table),
    )
    _plot_curves(out_dir / "miou_vs_clicks.png", _panels(results, None), "mIoU vs clicks")
    _plot_curves(out_dir / "miou_by_size.png", _panels(results, SIZE_CLASSES), "mIoU vs clicks by object size")
    return results
