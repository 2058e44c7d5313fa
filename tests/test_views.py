"""How views and resolved inference settings are named in tables, logs and the model list."""

from __future__ import annotations

from mst_geo.cli.models import inference_note
from mst_geo.model.config import MSTConfig
from mst_geo.views import describe_inference, describe_views, views_json


def test_inference_settings_name_only_what_differs_from_one_plain_pass():
    assert describe_inference(352, 1, False) == describe_views(352) == "352 px"
    assert describe_inference((288, 416), 2, True) == "288+416 px, 2 first-click passes, mirror-averaged"
    assert describe_inference([224], 1, True) == "224 px, mirror-averaged"
    assert views_json((288, 416)) == [288, 416] and views_json([224]) == 224


def test_the_model_list_says_runs_at_only_when_the_view_is_not_the_input_size():
    assert inference_note(MSTConfig(input_size=224)) == ""
    assert inference_note(MSTConfig(input_size=224, inference_size=224, first_click_passes=2)) == "2 first-click passes"
    assert inference_note(MSTConfig(input_size=224, flip=True)) == "mirror-averaged"
    assert inference_note(MSTConfig.from_dict({"input_size": 224, "inference_size": [288, 416], "first_click_passes": 2,
                                               "flip": True})) == (
        "runs at 288+416 px, 2 first-click passes, mirror-averaged")
