"""Every view a first click's scale search tries, and which one each choice rule would keep.

Not a test: run it by hand when changing how `mst_geo.geo.scene` picks a first click's view.

    python scripts/first_click_views.py                                   # example ponds, 1x/4x/8x/16x
    python scripts/first_click_views.py --heldout 200 --factors 1,4,8     # held-out photos

Each labelled polygon gets the RITM simulated user's first click (its most interior point); the
scale search's framed views (``ObjectSegmenter.scale_views``) are scored as the workflow writes
them (the mask's polygon against the label, IoU in map units). Printed: one-click mIoU per set for
the view the model is most confident of (mean probability over the mask, the closest within
0.01: the rule until 2026-11-28), the most stable one (SAM's stability score: the rule ``segment``
uses), the most stable one that also stays the same in the next framed view (stability times
that IoU, the largest view's with the one before it: tried, not used) and the best view in
hindsight (what a perfect rule would reach). With ``--shift N`` each
object is clicked again with every window N grey levels brighter, and each rule's line says for
how many objects it then keeps a view of another size: how fragile the choice is (a one-level
move of one band's stretch once moved single ponds' one-click IoU by 0.56, README). The views go
to ``first_click_views.json`` in --workdir, so further rules can be scored without the model.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from bench_first_click import add_scene_arguments, object_grid, polygon_iou, scenes_by_factor  # scripts/bench_first_click.py
from mst_geo.api import scene_inference
from mst_geo.clicks.predictor import Predictor
from mst_geo.clicks.simulator import next_click
from mst_geo.geo.prompts import PixelMapper, SceneClick
from mst_geo.geo.raster import SceneRaster
from mst_geo.geo.scene import ObjectSegmenter
from mst_geo.geo.vectorize import mask_to_polygon
from mst_geo.model.checkpoint import resolve_model

CONFIDENCE_TIE = 0.01
"""The confidence rule's tie: the closest of views within this of the most confident one won."""


def first_click(raster: SceneRaster, geometry: BaseGeometry) -> SceneClick:
    """The simulated user's first click on ``geometry`` (its most interior point) as a scene click."""
    truth, transform = object_grid(geometry)
    click = next_click(truth, np.zeros_like(truth), clicked=[])
    x, y = transform * (click.x + 0.5, click.y + 0.5)
    mapper = PixelMapper(raster.crs, raster.transform, raster.width, raster.height, raster.is_valid)
    return mapper.click(x, y, True, None)  # as the API maps a click


def score_views(segmenter: ObjectSegmenter, geometry: BaseGeometry) -> list[dict]:
    """Side, confidence, stability and IoU of each framed view of the first click on ``geometry``,
    and the IoU of its object with the next larger view's (None for the largest)."""
    views = segmenter.scale_views((first_click(segmenter.raster, geometry),))
    shapes = [mask_to_polygon(view.mask, view.transform) for view in views]
    return [{"side": int(max(view.window.width, view.window.height)), "confidence": view.score,
             "stability": segmenter.stability(view), "iou": polygon_iou(shape, geometry),
             "iou_next": polygon_iou(shape, shapes[index + 1]) if index + 1 < len(shapes) else None}
            for index, (view, shape) in enumerate(zip(views, shapes))]


class BrighterPredictor(Predictor):
    """The predictor with every image it is given ``shift`` grey levels brighter (clipped)."""

    def __init__(self, *args, shift: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.shift = shift

    def set_image(self, image: np.ndarray) -> None:
        super().set_image(np.clip(image + np.float32(self.shift / 255), 0, 1))  # the scene's float 0..1 read


def summary(objects: list[list[dict]], shifted: list[list[dict]] | None) -> str:
    """Each rule's one-click mIoU and, with ``shifted`` views, how many objects it keeps another view for."""
    parts = []
    for name, rule in RULES.items():
        text = f"{name} {np.mean([rule(views)['iou'] for views in objects]):.3f}"
        if shifted is not None:
            moved = sum(rule(views)["side"] != rule(other)["side"] for views, other in zip(objects, shifted))
            text += f" (another view when brighter: {moved}/{len(objects)})"
        parts.append(text)
    return "; ".join(parts)


def most_confident(views: list[dict]) -> dict:
    best = max(view["confidence"] for view in views)
    return next(view for view in views if view["confidence"] >= best - CONFIDENCE_TIE)


def stable_like_its_neighbour(views: list[dict]) -> dict:
    """The view of most stability times the IoU of its object with the next framed view's (the
    largest's with the one before it, so it is not favoured by having no next; a lone view wins):
    a scale-space reading of stability, the object staying the same as the view doubles."""
    def score(index: int) -> float:
        if len(views) == 1:
            return views[0]["stability"]
        like = views[index]["iou_next"] if index + 1 < len(views) else views[index - 1]["iou_next"]
        return views[index]["stability"] * like

    return views[max(range(len(views)), key=score)]


RULES = {
    "most confident (before 2026-11-28)": most_confident,
    "most stable (segment)": lambda views: max(views, key=lambda view: view["stability"]),
    "most stable and like its neighbour view": stable_like_its_neighbour,
    "best in hindsight": lambda views: max(views, key=lambda view: view["iou"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scene_arguments(parser)
    parser.add_argument("--shift", type=int, default=0, help="Also click with windows this many grey levels brighter.")
    args = parser.parse_args()
    network, _ = resolve_model(args.model)
    options = scene_inference(network)  # as `segment` runs the model
    predictors = [Predictor(network, **options)]
    if args.shift:
        predictors.append(BrighterPredictor(network, **options, shift=args.shift))
    sets = {}
    for factor, scenes in scenes_by_factor(args):
        runs = [[] for _ in predictors]
        for scene, labels in tqdm(scenes, desc=f"x{factor}", unit="scene", disable=len(scenes) == 1):
            with SceneRaster(scene) as raster:
                for objects, predictor in zip(runs, predictors):
                    segmenter = ObjectSegmenter(raster, predictor, options["input_size"])
                    objects += [score_views(segmenter, geometry) for geometry in labels.to_crs(raster.crs).geometry]
        objects, shifted = runs[0], runs[1] if args.shift else None
        sets[f"x{factor}"] = {"views": objects, "brighter_views": shifted}
        print(f"x{factor}: {len(objects)} objects, {np.mean([len(views) for views in objects]):.1f} framed views each; "
              f"{summary(objects, shifted)}", flush=True)
    out = args.workdir / "first_click_views.json"
    out.write_text(json.dumps({"model": args.model, "shift": args.shift, "sets": sets}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
