"""The iterative Predictor with a tiny random MST model on a real image: shapes, probabilities,
the previous mask reaching the network, and the zoom-in crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mst_geo.clicks import Click
from mst_geo.clicks.predictor import Predictor, box_iou, zoom_box
from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.model import create_model


class _Recording(nn.Module):
    """Passes every call to the real model and keeps its inputs, to see what the network got."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, image, clicks, prev_mask):
        self.calls.append((image.clone(), clicks.clone(), prev_mask.clone()))
        return self.model(image, clicks, prev_mask)


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return create_model("mst_tiny", depth=2, input_size=160).eval()


@pytest.fixture(scope="module")
def grabcut_instance(iseg_root):
    return load_iseg_dataset("GrabCut", iseg_root)[0]  # 106024, 321x481


def test_output_is_a_probability_map_of_the_image_size(tiny_model, grabcut_instance):
    recording = _Recording(tiny_model)
    predictor = Predictor(recording, zoom_in=False)
    predictor.set_image(grabcut_instance.image)
    probabilities = predictor.predict([Click(200, 230, True)])
    assert probabilities.shape == grabcut_instance.image.shape[:2] and probabilities.dtype == np.float32
    assert 0.0 <= probabilities.min() and probabilities.max() <= 1.0
    image, clicks, prev_mask = recording.calls[0]
    # long side 481 -> 160, short side 321 -> 107, padded to 112 (multiple of 16)
    assert tuple(image.shape) == (1, 3, 112, 160) and tuple(prev_mask.shape) == (1, 1, 112, 160)
    assert float(image.max()) <= 1.0 and float(image[..., 107:, :].abs().max()) == 0.0
    # clicks follow the resize of each axis (pixel centres map to pixel centres)
    expected = [200.5 * 107 / 321 - 0.5, 230.5 * 160 / 481 - 0.5, 1.0]
    assert clicks[0, 0].tolist() == pytest.approx(expected, abs=1e-4)
    assert float(prev_mask.abs().max()) == 0.0  # nothing before the first click


def test_the_model_is_shown_its_inference_size(grabcut_instance):
    recording = _Recording(create_model("mst_tiny", depth=2, input_size=160, inference_size=224).eval())
    predictor = Predictor(recording, zoom_in=False)
    predictor.set_image(grabcut_instance.image)
    probabilities = predictor.predict([Click(200, 230, True)])
    assert predictor.view_sizes == (224,) and probabilities.shape == grabcut_instance.image.shape[:2]
    assert tuple(recording.calls[0][0].shape) == (1, 3, 160, 224)  # 321x481 -> 149x224, padded to 160
    assert Predictor(recording, input_size=96).view_sizes == (96,)  # an explicit size wins


def test_several_views_are_averaged(tiny_model, grabcut_instance):
    """Multi-scale test-time augmentation: one pass per side, the mean of their probabilities."""
    clicks = [Click(200, 230, True), Click(60, 60, False)]
    single = []
    for side in (96, 160):
        predictor = Predictor(tiny_model, zoom_in=False, input_size=side)
        predictor.set_image(grabcut_instance.image)
        single.append(predictor.predict(clicks))
    recording = _Recording(tiny_model)
    both = Predictor(recording, zoom_in=False, input_size=(96, 160))
    both.set_image(grabcut_instance.image)
    averaged = both.predict(clicks)
    assert [tuple(call[0].shape[-2:]) for call in recording.calls] == [(64, 96), (112, 160)]
    assert not np.allclose(single[0], single[1], atol=1e-3)  # the views differ, so the mean says something
    np.testing.assert_allclose(averaged, (single[0] + single[1]) / 2, atol=1e-6)
    assert averaged.dtype == np.float32
    card_views = create_model("mst_tiny", depth=2, input_size=160, inference_size=[96, 160])
    assert Predictor(card_views).view_sizes == (96, 160)  # a card's list is its views


def test_a_first_click_pass_feeds_the_one_before_its_mask(tiny_model, grabcut_instance):
    """With two first-click passes a bare first click runs the model twice, the second pass on the
    first's probabilities as its previous mask; later clicks, and a first click with a mask, run once."""
    first = Click(200, 230, True)
    plain = Predictor(tiny_model, zoom_in=False)
    plain.set_image(grabcut_instance.image)
    once = plain.predict([first])
    expected = plain.predict([first], once)
    recording = _Recording(tiny_model)
    twice = Predictor(recording, zoom_in=False, first_click_passes=2)
    twice.set_image(grabcut_instance.image)
    refined = twice.predict([first])
    assert len(recording.calls) == 2
    assert float(recording.calls[0][2].abs().max()) == 0.0
    fed = recording.calls[1][2][0, 0, :107].numpy()  # 321x481 -> 107x160, the first pass's map resized
    assert abs(fed.mean() - once.mean()) < 0.01 and fed.max() > 0.1
    assert not np.allclose(refined, once, atol=1e-3)  # the second pass changed the mask
    np.testing.assert_array_equal(refined, expected)
    twice.predict([first, Click(60, 60, False)], refined)
    assert len(recording.calls) == 3  # a correction click: one pass
    np.testing.assert_array_equal(twice.predict([first], np.zeros_like(once)), refined)  # an empty mask is bare
    assert len(recording.calls) == 5
    twice.predict([first], once)  # a first click with a caller's mask: one pass, as a correction
    assert len(recording.calls) == 6


def test_first_click_passes_and_flip_come_from_the_card_unless_given(grabcut_instance):
    card = create_model("mst_tiny", depth=2, input_size=160, first_click_passes=3, flip=True)
    assert Predictor(card).first_click_passes == 3 and Predictor(card).flip is True
    assert Predictor(card, first_click_passes=1).first_click_passes == 1
    assert Predictor(card, flip=False).flip is False
    assert Predictor(create_model("mst_tiny", depth=2, input_size=160)).flip is False
    with pytest.raises(ValueError, match="first_click_passes must be at least 1, got 0"):
        Predictor(card, first_click_passes=0)
    with pytest.raises(ValueError, match="first_click_passes must be a whole number of at least 1, got 0"):
        create_model("mst_tiny", depth=2, input_size=160, first_click_passes=0)


def test_previous_mask_is_fed_back_resized(tiny_model, grabcut_instance):
    recording = _Recording(tiny_model)
    predictor = Predictor(recording, zoom_in=False)
    predictor.set_image(grabcut_instance.image.astype(np.float32) / 255.0)  # float input is fine too
    prev = np.zeros(grabcut_instance.image.shape[:2], dtype=np.float32)
    prev[:, :240] = 1.0  # left half of the image
    predictor.predict([Click(200, 230, True), Click(10, 10, False)], prev)
    _, clicks, fed = recording.calls[-1]
    assert clicks.shape[1] == 2 and clicks[0, 1, 2].item() == 0.0
    fed = fed[0, 0, :107].numpy()
    assert fed[:, :75].min() > 0.99 and fed[:, 85:].max() < 0.01  # 240 * 160/481 ≈ 80


def test_zoom_box_grows_the_mask_and_clicks_box():
    mask = np.zeros((400, 600), dtype=bool)
    mask[100:150, 200:300] = True  # 50 x 100 px object
    box = zoom_box(mask, [Click(120, 250, True), Click(300, 500, False)], expansion=1.4, min_crop=100)
    # centre (125, 250); height 50 * 1.4 = 70 -> at least 100; width 100 * 1.4 = 140; the
    # negative click far away does not count
    assert box == (75, 180, 175, 320)
    box = zoom_box(mask, [Click(120, 250, True), Click(160, 260, True)], expansion=1.4, min_crop=100)
    top, left, bottom, right = box
    assert top <= 100 and bottom >= 161 and left <= 200 and right >= 300  # positive click included
    edge = zoom_box(np.zeros((400, 600), bool), [Click(2, 3, True)], expansion=1.4, min_crop=100)
    assert edge[0] == 0 and edge[1] == 0  # clipped to the image
    assert zoom_box(np.zeros((10, 10), bool), [Click(2, 2, False)], 1.4, 5) is None
    # positive clicks the caller's window cut off (a scene window capped at its largest side) are
    # not in this image: neither an IndexError nor a wrapped-around negative index
    assert zoom_box(mask, [Click(120, 250, True), Click(-40, 250, True), Click(120, 900, True)], 1.4, 100) == (75, 180, 175, 320)


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (0, 5, 10, 15)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_zoom_in_predicts_on_a_crop_and_pastes_it_back(tiny_model, grabcut_instance):
    recording = _Recording(tiny_model)
    predictor = Predictor(recording, zoom_in=True, zoom_min_crop=64)
    predictor.set_image(grabcut_instance.image)
    first = predictor.predict([Click(200, 230, True)])
    assert tuple(recording.calls[0][0].shape[-2:]) == (112, 160)  # first click: whole image
    prev = np.zeros_like(first)
    prev[180:220, 200:260] = 0.9  # the current mask: 40 x 60 px
    clicks = [Click(200, 230, True), Click(190, 250, False)]
    second = predictor.predict(clicks, prev)
    image, fed_clicks, fed_mask = recording.calls[1]
    top, left, bottom, right = predictor.roi
    assert (bottom - top, right - left) == (64, 84)  # 40 -> min 64; 60 * 1.4 = 84
    assert max(image.shape[-2:]) == 160  # the crop is resized to the model's input size
    assert float(fed_mask.max()) > 0.8 and fed_clicks.shape[1] == 2
    outside = np.ones_like(second, dtype=bool)
    outside[top:bottom, left:right] = False
    assert second[outside].max() == 0.0 and second[~outside].max() > 0.0
    # the crop shows the image there: compare with the resized original window
    window = torch.from_numpy(grabcut_instance.image[top:bottom, left:right]).permute(2, 0, 1).float() / 255
    expected = torch.nn.functional.interpolate(window[None], size=(122, 160), mode="bilinear", align_corners=False)
    assert torch.allclose(image[..., :122, :], expected, atol=1e-5)
    # a third click inside the same box keeps the box
    predictor.predict(clicks + [Click(200, 240, True)], prev)
    assert predictor.roi == (top, left, bottom, right)


def test_predict_before_set_image_is_an_error(tiny_model):
    with pytest.raises(RuntimeError, match="set_image"):
        Predictor(tiny_model).predict([Click(1, 1, True)])


def test_flip_averages_the_view_and_its_mirror(tiny_model, grabcut_instance):
    recording = _Recording(tiny_model)
    flipped = Predictor(recording, zoom_in=False, flip=True)
    flipped.set_image(grabcut_instance.image)
    clicks = [Click(200, 230, True), Click(40, 100, False)]
    averaged = flipped.predict(clicks)
    image, fed_clicks, _ = recording.calls[-1]
    assert image.shape[0] == 2 and torch.equal(image[1, :, :107], image[0, :, :107].flip(-1))
    assert fed_clicks[1, :, 1].tolist() == pytest.approx((159 - fed_clicks[0, :, 1]).tolist())
    # the same result as predicting the image and its mirror one by one
    plain = Predictor(tiny_model, zoom_in=False)
    plain.set_image(grabcut_instance.image)
    direct = plain.predict(clicks)
    plain.set_image(np.ascontiguousarray(grabcut_instance.image[:, ::-1]))
    width = grabcut_instance.image.shape[1]
    mirrored = plain.predict([Click(c.y, width - 1 - c.x, c.positive) for c in clicks])[:, ::-1]
    assert np.allclose(averaged, (direct + mirrored) / 2, atol=1e-4)
