"""MSTModel behaviour on real images: shapes, multi-scale kernels, token selection, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mst_geo.model import MSTLoss, create_model, list_presets

torch.set_num_threads(1)


def load_instance(iseg_root: Path, size: int, name: str = "ILSVRC2012_test_00000004"):
    """A real DUTS-TR image and its salient-object mask, resized to ``size`` x ``size``."""
    image = Image.open(iseg_root / "DUTS_TR" / "img" / f"{name}.jpg").convert("RGB").resize((size, size))
    mask = Image.open(iseg_root / "DUTS_TR" / "gt" / f"{name}.png").convert("L").resize((size, size), Image.NEAREST)
    image_t = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mask_t = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None, None]
    return image_t, mask_t


def interior_click(mask: torch.Tensor) -> torch.Tensor:
    """``[1,1,3]`` positive click at the object pixel farthest from the background."""
    import cv2

    dist = cv2.distanceTransform(mask[0, 0].numpy().astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    return torch.tensor([[[float(y), float(x), 1.0]]])


def test_presets_are_registered():
    assert list_presets() == ["mst_xtiny", "mst_tiny", "mst_small", "mst_base", "mst_large"]
    widths = {name: create_model(name, depth=1).config.embed_dim for name in list_presets()}
    assert widths == {"mst_xtiny": 160, "mst_tiny": 192, "mst_small": 384, "mst_base": 768, "mst_large": 1024}


def test_tiny_forward_backward_on_a_real_image(iseg_root):
    image, mask = load_instance(iseg_root, 224)
    clicks = torch.cat([interior_click(mask), torch.tensor([[[2.0, 2.0, 0.0], [0.0, 0.0, -1.0]]])], dim=1)
    model = create_model("mst_tiny", input_size=224).train()
    output = model(image, clicks, torch.zeros_like(mask))
    assert output.logits.shape == (1, 1, 224, 224)
    loss, parts = MSTLoss(focal_weight=1.0, contrastive_weight=0.1)(output, mask, clicks)
    assert torch.isfinite(loss) and set(parts) == {"focal", "contrastive"}
    loss.backward()
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.backbone.click_embed.proj.weight.grad.abs().sum() > 0


def candidate_centres(height: int, width: int, patches=(8, 28)) -> torch.Tensor:
    """``[Nc,2]`` (y, x) pixel centres of the candidate tokens, in the model's order."""
    centres = []
    for patch in patches:
        ys = (torch.arange(-(-height // patch)) + 0.5) * patch
        xs = (torch.arange(-(-width // patch)) + 0.5) * patch
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        centres.append(torch.stack([gy.flatten(), gx.flatten()], dim=1))
    return torch.cat(centres)


@pytest.mark.parametrize("name", ["mst_tiny", "mst_small", "mst_base", "mst_large"])
@pytest.mark.parametrize("size", [(448, 448), (320, 496)])
def test_every_preset_gives_full_resolution_logits(iseg_root, name, size):
    # depth 2 keeps the test in seconds; width, heads and every other layer are the preset's own.
    image, mask = load_instance(iseg_root, 448)
    image = torch.nn.functional.interpolate(image, size=size, mode="bilinear")
    model = create_model(name, depth=2).eval()
    clicks = torch.tensor([[[100.0, 150.0, 1.0], [10.0, 10.0, 0.0], [0.0, 0.0, -1.0]]])
    with torch.no_grad():
        output = model(image, clicks, torch.zeros(1, 1, *size))
    assert output.logits.shape == (1, 1, *size)
    base_tokens = (size[0] // 16) * (size[1] // 16)
    assert 1 <= output.selected_index.shape[1] <= round(base_tokens / 16)
    assert output.token_embeddings.shape[1] == base_tokens
    assert torch.isfinite(output.logits).all()


def test_fine_and_coarse_kernels_are_derived_from_the_base_kernel():
    from timm.layers.patch_embed import resample_patch_embed

    embed = create_model("mst_tiny", depth=1).backbone.patch_embed
    for patch in (8, 28):
        assert torch.allclose(embed.kernel(patch), resample_patch_embed(embed.proj.weight, [patch, patch]), atol=1e-5)
    before = {patch: embed.kernel(patch).detach().clone() for patch in (8, 28)}
    with torch.no_grad():
        embed.proj.weight[:, :, :8, :8] += 1.0
    for patch in (8, 28):
        assert not torch.allclose(embed.kernel(patch), before[patch])
    tokens, grid = embed(torch.rand(1, 3, 64, 64), 28)
    assert grid == (3, 3)  # 64 px padded to 84 for 28 px tokens
    tokens.sum().backward()
    assert embed.proj.weight.grad.abs().sum() > 0


def test_perturbed_topk_gradient_raises_the_tokens_it_rewards():
    from mst_geo.model.tokens import perturbed_topk

    torch.manual_seed(0)
    scores = torch.tensor([[0.50, 0.52, 0.48, 0.51, 0.10]], requires_grad=True)
    indicator = perturbed_topk(scores, 2, 500, 0.05)
    assert torch.allclose(indicator.sum(dim=-1), torch.ones(1, 2))
    indicator[:, :, 2].sum().backward()  # reward selecting token 2
    assert scores.grad[0, 2] > 0 and scores.grad[0, 2] == scores.grad[0].max()


def test_topk_is_differentiable_in_training_and_exact_in_eval(iseg_root):
    image, mask = load_instance(iseg_root, 224)
    clicks = interior_click(mask)
    model = create_model("mst_tiny", input_size=224, depth=2).train()
    model(image, clicks, torch.zeros_like(mask)).logits.mean().backward()
    assert model.backbone.selector.proj.weight.grad.abs().sum() > 0  # only reachable through the top-k

    model.eval()
    with torch.no_grad():
        first = model(image, clicks, torch.zeros_like(mask))
        second = model(image, clicks, torch.zeros_like(mask))
    # 224 px: 14x14 = 196 base tokens, topk_ratio 1/16 -> 12 kept (min score 0 keeps them all eligible)
    scores, selected = first.token_scores[0], first.selected_index[0]
    assert selected.shape == (12,) and torch.equal(selected, selected.sort().values)
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen[selected] = True
    assert chosen.sum() == 12 and scores[chosen].min() > scores[~chosen].max()  # strictly the 12 best
    assert torch.equal(first.selected_index, second.selected_index)


def test_eval_selection_keeps_exactly_the_best_scoring_tokens():
    """Hand-made, tie-free scores: which tokens are kept, and how many under a minimum score."""
    from mst_geo.model.tokens import TokenSelector

    selector = TokenSelector(embed_dim=4, score_dim=4, num_samples=10, sigma=0.05).eval()
    fixed = torch.tensor([[0.90, 0.10, 0.70, 0.95, 0.30, 0.80, 0.20], [0.15, 0.85, 0.05, 0.60, 0.99, 0.40, 0.50]])
    selector.score = lambda *args: fixed
    candidates = torch.arange(2 * 7 * 4, dtype=torch.float32).reshape(2, 7, 4)
    unused = (torch.zeros(2, 3, 4), candidates, torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1))
    kept = selector(*unused, k=3)
    assert kept.index.tolist() == [[0, 3, 5], [1, 3, 4]]
    assert torch.equal(kept.tokens[0], candidates[0, [0, 3, 5]]) and torch.equal(kept.tokens[1], candidates[1, [1, 3, 4]])
    assert torch.equal(kept.indicator.argmax(dim=-1), kept.index) and torch.equal(kept.indicator.sum(dim=-1), torch.ones(2, 3))
    # above 0.82: 2 tokens in sample 0 (0.90, 0.95), 2 in sample 1 (0.85, 0.99) -> k = 2
    assert selector(*unused, k=3, min_score=0.82).index.tolist() == [[0, 3], [1, 4]]
    # above 0.92: 1 and 1 -> k = 1; above 0.999: none -> still 1 (at least one token)
    assert selector(*unused, k=3, min_score=0.92).index.tolist() == [[3], [4]]
    assert selector(*unused, k=3, min_score=0.999).index.tolist() == [[3], [4]]
    # above 0.55: 4 in sample 0, 3 in sample 1 -> the sample with most sets k = 4 for both (under k = 5)
    assert selector(*unused, k=5, min_score=0.55).index.tolist() == [[0, 2, 3, 5], [1, 3, 4, 6]]


def test_inference_keeps_fewer_tokens_when_few_score_high(iseg_root):
    image, mask = load_instance(iseg_root, 224)
    clicks = interior_click(mask)
    counts = {}
    for threshold in (0.0, 1.0):
        model = create_model("mst_tiny", input_size=224, depth=1, topk_min_score=threshold).eval()
        with torch.no_grad():
            counts[threshold] = model(image, clicks, torch.zeros_like(mask)).selected_index.shape[1]
    assert counts == {0.0: round(196 / 16), 1.0: 1}


def test_a_click_pulls_the_selected_tokens_towards_it(iseg_root):
    torch.manual_seed(0)
    image, mask = load_instance(iseg_root, 224)
    model = create_model("mst_tiny", input_size=224, depth=2).eval()
    centres = candidate_centres(224, 224)
    rows = []
    for click in (torch.tensor([[[20.0, 20.0, 1.0]]]), torch.tensor([[[200.0, 200.0, 1.0]]]), interior_click(mask)):
        with torch.no_grad():
            selected = centres[model(image, click, torch.zeros_like(mask)).selected_index[0]]
        where = click[0, 0, :2]
        assert (selected - where).norm(dim=1).mean() < 0.8 * (centres - where).norm(dim=1).mean()
        rows.append(selected[:, 0].mean())
    assert rows[0] < rows[1]  # moving the click down moves the selection down
    on_object = mask[0, 0][selected[:, 0].long().clamp(max=223), selected[:, 1].long().clamp(max=223)].mean()
    assert on_object > 2 * mask.mean()  # a click on the object selects mostly object tokens


def test_coverage_partitions_every_base_cell():
    from mst_geo.model.tokens import candidate_coverage

    for size in ((448, 448), (320, 496)):
        fine_count = (size[0] // 8) * (size[1] // 8)
        coverage = candidate_coverage(size, 16, (8, 28), torch.device("cpu")).to_dense()
        # fine tokens and coarse tokens each tile the image exactly once
        assert torch.allclose(coverage[:, :fine_count].sum(dim=1), torch.ones(coverage.shape[0]))
        assert torch.allclose(coverage[:, fine_count:].sum(dim=1), torch.ones(coverage.shape[0]))
        assert torch.allclose(coverage[:, :fine_count].sum(dim=0), torch.full((fine_count,), 0.25))


def test_loss_falls_when_overfitting_one_real_instance(iseg_root):
    torch.manual_seed(0)
    image, mask = load_instance(iseg_root, 128)
    clicks = torch.cat([interior_click(mask), torch.tensor([[[3.0, 3.0, 0.0]]])], dim=1)
    model = create_model("mst_tiny", input_size=128, depth=4).train()
    criterion = MSTLoss(focal_weight=1.0, contrastive_weight=0.1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-4)
    losses, focal = [], []
    for _ in range(30):
        loss, parts = criterion(model(image, clicks, torch.zeros_like(mask)), mask, clicks)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        focal.append(parts["focal"].item())
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]
    assert sum(focal[-3:]) / 3 < 0.75 * focal[0]
    model.eval()
    with torch.no_grad():
        prediction = model(image, clicks, torch.zeros_like(mask)).logits > 0
    iou = (prediction & (mask > 0)).sum() / (prediction | (mask > 0)).sum()
    assert iou > 0.8


def test_bfloat16_autocast_trains_and_selects(iseg_root):
    image, mask = load_instance(iseg_root, 128)
    clicks = interior_click(mask)
    model = create_model("mst_tiny", input_size=128, depth=2).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(image, clicks, torch.zeros_like(mask))
        loss, _ = MSTLoss()(output, mask, clicks)
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.selector.proj.weight.grad.abs().sum() > 0


def test_click_disks_follow_labels_and_ignore_padding():
    from mst_geo.model.click_maps import click_disk_maps

    clicks = torch.tensor([[[10.0, 10.0, 1.0], [30.0, 40.0, 0.0], [50.0, 50.0, -1.0]],
                           [[63.0, 63.0, 0.0], [0.0, 0.0, -1.0], [0.0, 0.0, -1.0]]])
    maps = click_disk_maps(clicks, 64, 64, radius=5)
    disk = sum(1 for dy in range(-5, 6) for dx in range(-5, 6) if dy * dy + dx * dx <= 25)
    assert maps[0, 0].sum() == disk and maps[0, 1].sum() == disk  # padding click at (50,50) drew nothing
    assert maps[0, 0, 10, 15] == 1 and maps[0, 0, 10, 16] == 0 and maps[0, 1, 30, 40] == 1
    assert maps[1, 0].sum() == 0 and 0 < maps[1, 1].sum() < disk  # corner disk clipped by the image


def test_click_disks_match_a_per_pixel_distance_test():
    from mst_geo.model.click_maps import click_disk_maps

    torch.manual_seed(0)
    clicks = torch.rand(3, 24, 3) * 100 - 5  # some clicks off the image edge, fractional positions
    clicks[..., 2] = torch.randint(-1, 2, (3, 24)).float()
    ys = torch.arange(90.0).view(1, 1, 90, 1)
    xs = torch.arange(100.0).view(1, 1, 1, 100)
    inside = (ys - clicks[..., 0, None, None]) ** 2 + (xs - clicks[..., 1, None, None]) ** 2 <= 5.5**2
    label = clicks[..., 2, None, None]
    expected = torch.stack([(inside & (label == 1)).any(1), (inside & (label == 0)).any(1)], dim=1).float()
    assert torch.equal(click_disk_maps(clicks, 90, 100, radius=5.5), expected)


def test_inference_reuses_resampled_kernels_until_the_base_kernel_changes():
    embed = create_model("mst_tiny", depth=1).backbone.patch_embed
    with torch.no_grad():
        first = embed.kernel(28)
        assert embed.kernel(28) is first
        embed.proj.weight.mul_(2.0)  # an optimiser step or load_state_dict changes it in place
        second = embed.kernel(28)
    assert second is not first and torch.allclose(second, 2 * first, atol=1e-5)
    assert embed.kernel(28).requires_grad  # with autograd on, always recomputed from the parameter


def test_training_after_inference_at_the_same_size(iseg_root):
    """Segment first, fine-tune after, in one process (notebook 03): cached token geometry built
    under inference mode must not break the training step's backward pass."""
    torch.manual_seed(0)
    model = create_model("mst_tiny", depth=2, embed_dim=64, num_heads=2, head_dim=32, input_size=80)
    image, mask = load_instance(iseg_root, 80)
    clicks = interior_click(mask)
    with torch.inference_mode():
        model.eval()(image, clicks, torch.zeros_like(mask))
    output = model.train()(image, clicks, torch.zeros_like(mask))
    loss, _ = MSTLoss(1.0, 0.1)(output, mask, clicks)
    loss.backward()
    assert torch.isfinite(loss) and model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
