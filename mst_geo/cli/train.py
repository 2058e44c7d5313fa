"""``mst-geo train``: train or fine-tune an MST model from a YAML recipe (flags override it)."""

from __future__ import annotations

from pathlib import Path

import typer

from mst_geo.cli import BANDS_HELP, app
from mst_geo.cli.interrupts import resume_hint_on_interrupt
from mst_geo.errors import MSTGeoError


@app.command("train")
def train_command(
    config: Path = typer.Option(..., "--config", help="Training recipe, e.g. configs/train/mst_tiny_shipped.yaml."),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder holding the datasets (RITM layouts) or a pack from scripts/make_train_pack.py."),
    datasets: str | None = typer.Option(None, "--datasets", help="Comma-separated dataset names, e.g. COCO_MVal,DUTS_TR,CCP, folders in RITM's images-folder layout (img/ + gt/), "
    "or remote-sensing sets in their torchgeo layout: LoveDA, Inria, DeepGlobe, LandCoverAI, Potsdam, Vaihingen."),
    scene: str | None = typer.Option(None, "--scene", help="Fine-tune on your own GeoTIFF, a file or a COG's URL (needs --labels)."),
    labels: Path | None = typer.Option(None, "--labels", help="Vector labels (GeoPackage/GeoJSON/Shapefile, any CRS) for --scene: one polygon per object."),
    bands: str | None = typer.Option(None, "--bands", help=BANDS_HELP),
    devices: str | None = typer.Option(None, "--devices", help="Devices per node: a count, a list like 0,1 or 'auto'."),
    num_nodes: int | None = typer.Option(None, "--num-nodes", help="Machines taking part (Lightning DDP)."),
    accelerator: str | None = typer.Option(None, "--accelerator", help="cpu, gpu or auto."),
    precision: str | None = typer.Option(None, "--precision", help="Lightning precision, e.g. bf16-mixed, 32-true (default: bf16 on GPU)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps (in total, counting resumed ones)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Samples per device per step."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Data-loading processes per device."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Torch threads for CPU training (1 is fastest on a busy machine)."),
    out: str | None = typer.Option(None, "--out", help="Run folder: checkpoints/, logs/ and the exported model.safetensors."),
    resume: str | None = typer.Option(None, "--resume", help="Continue a run: a .ckpt file, a run folder, or 'auto' (the newest checkpoint in --out)."),
    init: str | None = typer.Option(None, "--init", help="Start from these weights: an MST checkpoint, 'default' (the shipped model) or ViT/MAE weights."),
    overrides: list[str] = typer.Option([], "--set", help="Any recipe key, e.g. --set optim.lr=1e-4 (repeatable)."),
) -> None:
    """Train an MST model: resumable, multi-GPU through Lightning, exported with a model card.

    Example:

        mst-geo train --config configs/train/mst_tiny_shipped.yaml --max-steps 800 --out runs/tiny

    Fine-tune the shipped model on your own scene and polygons:

        mst-geo train --config configs/train/finetune_scene.yaml \\
            --scene scene.tif --labels buildings.gpkg --max-steps 500 --out runs/my_scene
    """
    from mst_geo.train.config import load_train_config, parse_override
    from mst_geo.train.run import train

    if scene is not None and datasets is not None:
        raise MSTGeoError("--scene trains on the scene's polygons alone: leave out --datasets (a scene and "
                          "datasets are not mixed in one run)")
    values = dict(parse_override(item) for item in overrides)
    scene_bands = None
    if bands is not None:
        from mst_geo.geo.bands import parse_bands

        scene_bands = list(parse_bands(bands))
    flags = {
        "data.root": data_root,
        "data.datasets": None if datasets is None else [d.strip() for d in datasets.split(",") if d.strip()],
        "data.scene": None if scene is None else str(scene),
        "data.labels": None if labels is None else str(labels),
        "data.scene_bands": scene_bands,
        "data.workers": workers,
        "trainer.devices": None if devices is None else _parse_devices(devices),
        "trainer.num_nodes": num_nodes,
        "trainer.cpu_threads": threads,
        "trainer.accelerator": accelerator,
        "trainer.precision": precision,
        "trainer.max_steps": max_steps,
        "trainer.batch_size": batch_size,
        "out": out,
        "model.init": init,
    }
    values.update({key: value for key, value in flags.items() if value is not None})  # a flag left out keeps --set
    recipe = load_train_config(config, values)
    hint = f"continue with --resume auto and the same flags (--out {recipe.out}, --init and --set included)"
    with resume_hint_on_interrupt(hint, handle_sigterm=False):
        exported = train(recipe, resume=resume)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # with several processes every one returns here: one line is enough
        if recipe.task == "mae":
            typer.echo(f"encoder written to {exported}: start click training from it with --init {exported}")
        else:
            typer.echo(f"model written to {exported}")


def _parse_devices(text: str) -> int | str | list[int]:
    """``"2"`` -> 2, ``"0,1"`` -> [0, 1], anything else as given (``auto``, ``-1``)."""
    if "," in text:
        try:
            return [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise MSTGeoError(f"--devices {text!r}: a list must hold device numbers, e.g. 0,1") from None
    return int(text) if text.lstrip("-").isdigit() else text
