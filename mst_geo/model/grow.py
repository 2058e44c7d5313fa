"""Deepen a trained MST network without changing what it computes.

A small network trained to a plateau gains capacity when new ViT blocks are inserted between its
own, each starting as the identity: its attention and MLP output projections are zero, so both of
its residual branches add nothing (the function-preserving "Net2DeeperNet" idea of Chen, Goodfellow
and Shlens, "Net2Net", ICLR 2016, here through the pre-norm residual branches of a ViT). Training
then continues from the trained function rather than from scratch, which matters where a larger
preset cannot be trained from scratch in the time at hand (a 15-minute GPU slice).
"""

from __future__ import annotations

import dataclasses

import torch

from mst_geo.model.mst import MSTModel


def block_slots(depth: int, new_depth: int) -> list[int]:
    """Where each of ``depth`` trained blocks goes among ``new_depth``: spread evenly, so the new
    identity blocks sit between them (8 -> 12: after every second trained block)."""
    return [i * new_depth // depth for i in range(depth)]


def deepen(model: MSTModel, new_depth: int) -> MSTModel:
    """A copy of ``model`` with ``new_depth`` blocks computing the same masks (``ValueError`` when
    ``new_depth`` is not deeper)."""
    depth = model.config.depth
    if new_depth <= depth:
        raise ValueError(f"cannot deepen a {depth}-block network to {new_depth} blocks")
    grown = MSTModel(dataclasses.replace(model.config, depth=new_depth))
    slots = block_slots(depth, new_depth)
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone.blocks."):
            index, rest = key.removeprefix("backbone.blocks.").split(".", 1)
            key = f"backbone.blocks.{slots[int(index)]}.{rest}"
        state[key] = value
    with torch.no_grad():
        for slot in sorted(set(range(new_depth)) - set(slots)):
            block = grown.backbone.blocks[slot]
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()
            state.update({f"backbone.blocks.{slot}.{k}": v for k, v in block.state_dict().items()})
    grown.load_state_dict(state)
    return grown.train(model.training)
