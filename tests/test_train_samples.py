"""The training sample pipeline on real COCO_MVal / CCP images: deterministic, well-formed, varied."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mst_geo.clicks.sampler import MultiPointSampler
from mst_geo.data.instance import read_rgb
from mst_geo.errors import MSTGeoError
from mst_geo.train.augment import ColorJitter, Sample, paste_object, scale_flip_crop
from mst_geo.train.config import DataSection
from mst_geo.train.instances import build_split, hashed_holdout
from mst_geo.train.samples import ClickSampleSet, IsegObjects, SampleRecipe


@pytest.fixture(scope="module")
def split(iseg_root):
    return build_split(iseg_root, ["COCO_MVal", "CCP"], val_fraction=0.2, max_images=20)


@pytest.fixture(scope="module")
def dataset(split):
    recipe = SampleRecipe.from_config(DataSection(crop_size=96, min_object_area=100,
                                                  copy_paste_prob=0.5, saturation=0.3, hue=10))
    return ClickSampleSet(IsegObjects(split[0]), recipe, MultiPointSampler(), seed=3)


def test_split_is_by_image_and_stable(split, iseg_root):
    train, val = split
    train_keys = {g.key for g in train.groups}
    assert train_keys.isdisjoint({g.key for g in val.groups})
    assert len(val.groups) > 0 and len(train.groups) > len(val.groups)
    # COCO_MVal stores one photo per instance file: the copies share a group
    coco = [g for g in train.groups + val.groups if g.dataset == "COCO_MVal"]
    assert any(len(g.refs) > 1 for g in coco)
    assert all(len({r.image_id.rsplit("_", 1)[-1] for r in g.refs}) == 1 for g in coco)
    again = build_split(iseg_root, ["COCO_MVal", "CCP"], val_fraction=0.2, max_images=20)
    assert [g.key for g in again[1].groups] == [g.key for g in val.groups]
    assert all(hashed_holdout(g.key, 0.2) for g in val.groups)


def test_val_list_file_decides_the_split(iseg_root, tmp_path):
    listed = tmp_path / "val.txt"
    listed.write_text("# held out\nCCP/0005\n")
    train, val = build_split(iseg_root, ["CCP"], 0.2, val_list=listed, max_images=5)
    assert [g.key for g in val.groups] == ["CCP/0005"]
    assert "CCP/0005" not in {g.key for g in train.groups}


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(MSTGeoError, match="training data root not found"):
        build_split(tmp_path / "nowhere", ["COCO_MVal"], 0.1)
    with pytest.raises(MSTGeoError, match="no COCO_MVal folder"):
        build_split(tmp_path, ["COCO_MVal"], 0.1)


def test_samples_are_well_formed(dataset):
    for index in range(12):
        item = dataset[index]
        assert item["image"].shape == (3, 96, 96) and item["image"].dtype == torch.uint8
        target = item["target"][0].numpy() > 0
        assert target.sum() >= 16
        clicks = item["clicks"].numpy()
        real = clicks[clicks[:, 2] >= 0]
        assert 1 <= len(real) <= 24 and (clicks[len(real):] == -1).all()
        ys, xs = real[:, 0].astype(int), real[:, 1].astype(int)
        assert target[ys[real[:, 2] == 1], xs[real[:, 2] == 1]].all()
        assert not target[ys[real[:, 2] == 0], xs[real[:, 2] == 0]].any()


def test_sample_is_a_function_of_its_index(dataset):
    first, again, other = dataset[5], dataset[5], dataset[6]
    for key in first:
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["image"], other["image"])


def test_each_epoch_visits_every_instance_once(dataset):
    n = len(dataset.source)
    assert sorted(dataset.object_for(i) for i in range(n)) == list(range(n))
    assert [dataset.object_for(i) for i in range(n)] != [dataset.object_for(n + i) for i in range(n)]


def test_crop_keeps_object_anywhere(split):
    group = split[0].groups[0]
    image = read_rgb(group.refs[0].image_path)
    target = group.read_mask(0) == 1
    sample = Sample(image, target, np.zeros_like(target), np.zeros_like(target))
    centres = []
    for seed in range(20):
        crop = scale_flip_crop(sample, 96, (1.5, 3.0), 0.5, 100, np.random.default_rng(seed))
        assert crop.image.shape == (96, 96, 3) and crop.target.sum() > 0
        ys, xs = np.nonzero(crop.target)
        centres.append((ys.mean(), xs.mean()))
    assert np.std(np.array(centres), axis=0).min() > 5  # the object is not always centred


def test_copy_paste_makes_new_target_or_distractor(split):
    host, donor = split[0].groups[0], split[0].groups[-1]
    target = host.read_mask(0) == 1
    sample = scale_flip_crop(Sample(host.read_image(), target, np.zeros_like(target),
                                    np.zeros_like(target)), 128, (1.0, 1.0), 0.0, 100,
                             np.random.default_rng(0))
    donor_mask = donor.read_mask(0) == 1
    as_target = paste_object(sample, donor.read_image(), donor_mask, np.random.default_rng(1), True)
    assert as_target.target.any() and not (as_target.target & as_target.others).any()
    assert (as_target.others | as_target.target)[sample.target].all()
    assert not np.array_equal(as_target.image, sample.image)
    distractor = paste_object(sample, donor.read_image(), donor_mask, np.random.default_rng(1), False)
    assert (distractor.target <= sample.target).all()
    assert distractor.others.sum() == as_target.target.sum()


def test_color_jitter_changes_colours_within_range(split):
    image = split[0].groups[1].read_image()
    jitter = ColorJitter(prob=1.0, saturation=0.4, hue=15)
    out = jitter(image, np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.abs(out.astype(int) - image).mean() > 3
    assert np.array_equal(ColorJitter(prob=0.0)(image, np.random.default_rng(0)), image)


def test_batches_follow_the_global_step_with_any_worker_count(dataset):
    """Rank 1 of 2, resuming at step 3: samples (3*2+1)*2 .. , the same with 0 or 2 workers."""
    from torch.utils.data import DataLoader

    from mst_geo.train.datamodule import ResumableSampler

    sampler = ResumableSampler(lambda: 3, max_steps=5, batch_size=2, rank=1, world_size=2)
    assert list(sampler) == [14, 15, 18, 19]
    loaded = [list(DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=workers))
              for workers in (0, 2)]
    assert [b["index"].tolist() for b in loaded[1]] == [[14, 15], [18, 19]]
    for single, parallel in zip(*loaded, strict=True):
        assert all(torch.equal(single[key], parallel[key]) for key in single)
    assert torch.equal(loaded[1][0]["image"][0], dataset[14]["image"])


def test_own_photos_in_the_images_folder_layout_train(iseg_root, tmp_path):
    """A set without a layout of its own (images/ + masks/, two objects of one photo as
    ``<stem>_<k>``) trains: one image group per photo, masks read by the generic rule, and
    samples come out of it; GrabCut named by its path is still refused."""
    import shutil

    from PIL import Image

    own = tmp_path / "OwnPhotos"
    (own / "images").mkdir(parents=True)
    (own / "masks").mkdir()
    for k, ccp_id in enumerate(("0005", "0007")):
        shutil.copy(iseg_root / "CCP" / "img" / f"{ccp_id}.jpg", own / "images" / f"p{k}.jpg")
        for j, mask in enumerate(sorted((iseg_root / "CCP" / "gt").glob(f"{ccp_id}_*.png"))[:2]):
            Image.open(mask).save(own / "masks" / f"p{k}_{j}.png")
    train, val = build_split(tmp_path, ["OwnPhotos"], val_fraction=0.0)
    assert not val.groups and [g.key for g in train.groups] == ["OwnPhotos/p0", "OwnPhotos/p1"]
    assert [len(g.refs) for g in train.groups] == [2, 2]
    person = np.asarray(Image.open(sorted((iseg_root / "CCP" / "gt").glob("0005_*.png"))[0]))
    assert np.array_equal(train.groups[0].read_mask(0), (person > 0).astype(np.uint8))
    recipe = SampleRecipe.from_config(DataSection(crop_size=96, min_object_area=100))
    samples = ClickSampleSet(IsegObjects(train), recipe, MultiPointSampler(), seed=0)
    sample = samples[0]
    assert sample["image"].shape == (3, 96, 96) and (sample["target"] > 0).sum() >= 16
    with pytest.raises(MSTGeoError, match="GrabCut: benchmark set"):
        build_split(tmp_path, [str(iseg_root / "GrabCut")], 0.1)


def test_a_set_held_out_whole_names_its_folder(iseg_root, tmp_path):
    import shutil

    own = tmp_path / "sets" / "Own"
    (own / "img").mkdir(parents=True)
    (own / "gt").mkdir()
    shutil.copy(iseg_root / "CCP" / "img" / "0005.jpg", own / "img" / "a.jpg")
    shutil.copy(sorted((iseg_root / "CCP" / "gt").glob("0005_*.png"))[0], own / "gt" / "a.png")
    listed = tmp_path / "val.txt"
    listed.write_text("Own/a\n")
    with pytest.raises(MSTGeoError, match="every image is held out for validation \\(1 by the validation list or data.val_fraction 0.05\\)") as error:
        build_split(tmp_path, [str(own)], 0.05, val_list=listed)
    assert str(error.value).startswith(str(own))


def test_photo_samples_are_the_ones_earlier_versions_drew(iseg_root):
    """Merge, copy-paste and clicks of photo samples are bit-identical to the code that trained the
    shipped model (digest taken at d891e43, before remote-sensing sources and their paste rule):
    a run resumed across versions, or its recipe rerun, draws the same batches."""
    import hashlib

    train, _ = build_split(iseg_root, ["COCO_MVal", "CCP"], val_fraction=0.2, max_images=20)
    recipe = SampleRecipe.from_config(DataSection(crop_size=96, min_object_area=100, copy_paste_prob=1.0,
                                                  merge_objects_prob=0.5))
    samples = ClickSampleSet(IsegObjects(train), recipe, MultiPointSampler(), seed=3)
    digest = hashlib.sha256()
    for index in range(8):
        item = samples[index]
        for key in ("image", "target", "ignore", "clicks"):
            digest.update(item[key].numpy().tobytes())
    assert digest.hexdigest()[:16] == "15f5484d01816659"
