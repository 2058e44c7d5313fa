"""Training packs built from real DUTS_TR / CCP files: small, same layout, same split."""

from __future__ import annotations

import json
import shutil

import cv2
import pytest

from mst_geo.data.iseg import load_iseg_dataset
from mst_geo.errors import MSTGeoError
from mst_geo.train.instances import build_split
from mst_geo.train.pack import make_pack


@pytest.fixture()
def small_source(iseg_root, tmp_path):
    """A source root with 12 real DUTS_TR images and 4 real CCP images in their layouts."""
    root = tmp_path / "src"
    ids = (iseg_root / "DUTS_TR" / "list.txt").read_text().split()[:12]
    for sub in ("img", "gt"):
        (root / "DUTS_TR" / sub).mkdir(parents=True)
    for i in ids:
        shutil.copy(iseg_root / "DUTS_TR" / "img" / f"{i}.jpg", root / "DUTS_TR" / "img")
        shutil.copy(iseg_root / "DUTS_TR" / "gt" / f"{i}.png", root / "DUTS_TR" / "gt")
    (root / "DUTS_TR" / "list.txt").write_text("\n".join(ids) + "\n")
    records = json.loads((iseg_root / "CCP" / "instances.json").read_text())
    images = sorted({r["image"] for r in records})[:4]
    kept = [r for r in records if r["image"] in images]
    for record in kept:
        for key in ("image", "mask"):
            (root / "CCP" / record[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(iseg_root / "CCP" / record[key], root / "CCP" / record[key])
    (root / "CCP" / "instances.json").write_text(json.dumps(kept))
    return root


def test_pack_is_small_readable_and_keeps_the_split(small_source, tmp_path):
    out = tmp_path / "pack"
    report = make_pack(small_source, ["DUTS_TR", "CCP"], out, max_side=128, budget_mib=1.0,
                       val_fraction=0.25)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size == report.bytes and size <= 2**20
    assert report.images == 16 and 50 <= report.quality <= 90
    for name in ("DUTS_TR", "CCP"):
        original, packed = load_iseg_dataset(name, small_source), load_iseg_dataset(name, out)
        assert len(packed) == len(original)
        item, source_item = packed[0], original[0]
        assert max(item.image.shape[:2]) == 128
        assert set(item.mask.ravel().tolist()) <= {0, 1}
        # the object keeps its share of the image (nearest-neighbour masks, same aspect)
        assert item.mask.mean() == pytest.approx(source_item.mask.mean(), abs=0.02)
    held = (out / "val.txt").read_text()
    expected = build_split(small_source, ["DUTS_TR", "CCP"], 0.25)[1]
    assert {g.key for g in expected.groups} == {line for line in held.splitlines() if not line.startswith("#")}
    assert [g.key for g in build_split(out, ["DUTS_TR", "CCP"], 0.25)[1].groups] == \
        [g.key for g in expected.groups]


def test_pack_refuses_to_overflow_its_budget_or_overwrite(small_source, tmp_path):
    with pytest.raises(MSTGeoError, match="would not fit|over the"):
        make_pack(small_source, ["DUTS_TR"], tmp_path / "tiny", max_side=128, budget_mib=0.01)
    assert not (tmp_path / "tiny").exists()
    (tmp_path / "there").mkdir()
    with pytest.raises(MSTGeoError, match="already exists"):
        make_pack(small_source, ["DUTS_TR"], tmp_path / "there")
    image = cv2.imread(str(next((small_source / "DUTS_TR" / "img").iterdir())))
    assert max(image.shape[:2]) > 128  # the source really was larger than the pack
