"""``mst-geo models``: what ``--model`` accepts — the packaged checkpoint(s) and the presets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from mst_geo.cli import app
from mst_geo.errors import MSTGeoError
from mst_geo.views import describe_extras, describe_inference, view_sizes

if TYPE_CHECKING:  # the config module imports timm and torch: only when a command runs
    from mst_geo.model.config import MSTConfig


def packaged_checkpoints() -> list[Path]:
    """Checkpoints shipped inside the package (the default model first)."""
    from mst_geo.model.checkpoint import DEFAULT_CHECKPOINT

    folder = DEFAULT_CHECKPOINT.parent
    others = sorted(p for p in folder.glob("*.safetensors") if p != DEFAULT_CHECKPOINT)
    return ([DEFAULT_CHECKPOINT] if DEFAULT_CHECKPOINT.is_file() else []) + others


def card_summary(card: dict) -> str:
    """One line of a model card: training data, samples and the headline NoC@90 results."""
    training = card.get("training") or {}
    parts = []
    datasets = ((training.get("recipe") or {}).get("data") or {}).get("datasets")
    if datasets:
        parts.append("data " + ",".join(datasets))
    samples = training.get("total_samples_seen", training.get("samples_seen"))
    if samples:
        parts.append(f"{samples:,} samples")
    if training.get("hardware"):
        parts.append(str(training["hardware"]))
    for dataset, row in (card.get("metrics") or {}).get("noc", {}).items():
        if "noc@90" in row:
            parts.append(f"{dataset} NoC@90 {row['noc@90']:.2f}")
    return "; ".join(parts) or "no training record"


def inference_note(config: MSTConfig) -> str:
    """What the predictor does beyond one plain pass at the input size: ``runs at 288+416 px, 2
    first-click passes, mirror-averaged``, ``2 first-click passes`` (its own size), or nothing."""
    if config.views == view_sizes(config.input_size):
        return ", ".join(describe_extras(config.first_click_passes, config.flip))
    return f"runs at {describe_inference(config.views, config.first_click_passes, config.flip)}"


@app.command("models")
def models(
    show_card: Annotated[Path | None, typer.Option(
        "--card", help="Print the full model card (JSON) of this checkpoint file, or of 'default'.",
        metavar="PATH")] = None,
) -> None:
    """List the models that --model accepts: shipped checkpoints and untrained presets.

    Example:

        mst-geo models
        mst-geo models --card default
    """
    from mst_geo.model.checkpoint import DEFAULT_CHECKPOINT, checkpoint_path, read_card  # torch: only when the command runs
    from mst_geo.model.config import PRESETS, MSTConfig

    console = Console()
    if show_card is not None:
        if str(show_card) in PRESETS:
            raise MSTGeoError(f"{show_card} is an untrained preset: only checkpoints have a card")
        console.print_json(data=read_card(checkpoint_path(show_card)))
        return
    table = Table(title="Models for --model")
    for column in ("name", "preset", "input", "size", "about"):
        table.add_column(column)
    for path in packaged_checkpoints():
        card = read_card(path)
        name = "default" if path == DEFAULT_CHECKPOINT else str(path)
        config = MSTConfig.from_dict(card["config"])
        note = inference_note(config)
        runs_at = f" ({note})" if note else ""
        table.add_row(name, card["preset"], f"{config.input_size} px{runs_at}",
                      f"{path.stat().st_size / 2**20:.1f} MiB", card_summary(card))
    for name, config in PRESETS.items():
        table.add_row(name, name, f"{config.input_size} px", "-",
                      f"untrained preset (dim {config.embed_dim}, depth {config.depth}) for mst-geo train")
    console.print(table)
    if not DEFAULT_CHECKPOINT.is_file():
        console.print(f"[yellow]The packaged default model is missing: {DEFAULT_CHECKPOINT}[/]")
