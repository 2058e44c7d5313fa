"""Loaders of the RITM dataset layouts: real GrabCut/Berkeley/COCO_MVal/DUTS_TR/CCP, and tiny
PascalVOC/SBD/COCO_LVIS trees written in their published layouts from a real photo."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mst_geo.data.iseg import known_name, load_iseg_dataset
from mst_geo.errors import MSTGeoError, MSTGeoWarning


def test_grabcut_has_50_instances_with_the_unknown_band_ignored(iseg_root):
    ds = load_iseg_dataset("GrabCut", iseg_root)
    assert len(ds) == 50
    item = ds[0]
    assert item.image.dtype == np.uint8 and item.image.shape[2] == 3
    assert item.mask.shape == item.image.shape[:2]
    assert set(np.unique(item.mask)) <= {0, 1, 255}
    # the 128 band of the stored trimap becomes 255 (ignore) in ours
    assert any((ds[i].mask == 255).any() for i in range(3))
    assert {ref.image_path.suffix for ref in ds.refs} >= {".jpg", ".bmp", ".JPG"}


def test_berkeley_scores_one_object_per_image_as_ritm_does(iseg_root):
    """96 images, 96 objects: the part masks 189011a/b and 239007a/b, whose unions are the masks
    of 189011 and 239007, are not scored (RITM's evaluation pairs each image with its mask)."""
    ds = load_iseg_dataset("berkeley", iseg_root)  # case-insensitive name
    assert len(ds) == 96
    names = [ref.name for ref in ds.refs]
    assert "189011" in names and "189011a" not in names and "239007b" not in names
    whole = ds[names.index("189011")].mask
    parts = [np.asarray(Image.open(iseg_root / "Berkeley" / "masks" / f"189011{p}.png").convert("L")) > 128
             for p in "ab"]
    assert np.array_equal(whole == 1, parts[0] | parts[1])


@pytest.mark.parametrize(("name", "count"), [("COCO_MVal", 800), ("DUTS_TR", 3083), ("CCP", 3421)])
def test_training_sets_list_every_instance(iseg_root, name, count):
    ds = load_iseg_dataset(name, iseg_root)
    assert len(ds) == count
    item = ds[len(ds) // 2]
    assert set(np.unique(item.mask)) == {0, 1}
    assert item.mask.shape == item.image.shape[:2]


def test_ccp_person_contains_its_garments(iseg_root):
    ds = load_iseg_dataset("CCP", iseg_root)
    first_image = [i for i, ref in enumerate(ds.refs) if ref.image_id == ds.refs[0].image_id]
    person, garment = ds[first_image[0]], ds[first_image[1]]
    assert person.name.endswith("_0")
    overlap = np.count_nonzero(person.mask & garment.mask) / np.count_nonzero(garment.mask)
    assert overlap > 0.9


def _real_photo(iseg_root: Path) -> Path:
    return iseg_root / "GrabCut" / "data_GT" / "106024.jpg"


@pytest.mark.parametrize("where", ["PascalVOC", "PascalVOC/VOCdevkit/VOC2012", "VOCdevkit/VOC2012", "VOC2012", "VOC",
                                   "VOC/VOCdevkit/VOC2012"])
def test_pascal_voc_layout_one_item_per_object(iseg_root, tmp_path, where):
    """RITM's PascalVOC folder, or the official tar unpacked in PascalVOC/ or in the data root."""
    voc = tmp_path / where
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "SegmentationObject").mkdir()
    shutil.copy(_real_photo(iseg_root), voc / "JPEGImages" / "2007_000032.jpg")
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    indices = np.zeros((height, width), dtype=np.uint8)
    indices[10:60, 10:60] = 255  # void border of object 1
    indices[12:58, 12:58] = 1
    indices[100:150, 200:260] = 2
    png = Image.fromarray(indices, mode="P")
    png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
    png.save(voc / "SegmentationObject" / "2007_000032.png")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n")

    ds = load_iseg_dataset("PascalVOC", tmp_path)
    assert [ref.name for ref in ds.refs] == ["2007_000032_1", "2007_000032_2"]
    first, second = ds[0], ds[1]
    assert np.count_nonzero(first.mask == 1) == 46 * 46
    assert np.count_nonzero(first.mask == 255) == 50 * 50 - 46 * 46
    assert np.count_nonzero(second.mask == 1) == 50 * 60

    png.convert("RGB").save(voc / "SegmentationObject" / "2007_000032.png")  # re-saved by some tool as RGB
    again = load_iseg_dataset("PascalVOC", tmp_path)
    assert [ref.name for ref in again.refs] == ["2007_000032_1", "2007_000032_2"]
    assert all(np.array_equal(again[k].mask, ds[k].mask) for k in range(2))
    archive = tmp_path / Path(where).parts[0]  # named by its path: the set's folder or the archive's top
    assert load_iseg_dataset(str(archive), tmp_path / "elsewhere").name == "PascalVOC"


@pytest.mark.parametrize("where", ["SBD", "SBD/dataset", "SBD/benchmark_RELEASE/dataset", "benchmark_RELEASE/dataset"])
def test_sbd_layout_reads_instances_from_mat(iseg_root, tmp_path, where):
    """RITM's SBD folder, or the official benchmark.tgz unpacked in the data root or in SBD/."""
    from scipy.io import savemat

    sbd = tmp_path / where
    (sbd / "img").mkdir(parents=True)
    (sbd / "inst").mkdir()
    shutil.copy(_real_photo(iseg_root), sbd / "img" / "2008_000002.jpg")
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    segmentation = np.zeros((height, width), dtype=np.uint8)
    segmentation[20:40, 30:90] = 1
    segmentation[200:210, 5:15] = 3
    savemat(
        sbd / "inst" / "2008_000002.mat",
        {"GTinst": {"Segmentation": segmentation, "Categories": np.array([[15], [7]])}},
    )
    (sbd / "val.txt").write_text("2008_000002\n")

    ds = load_iseg_dataset("SBD", tmp_path)
    assert [ref.name for ref in ds.refs] == ["2008_000002_1", "2008_000002_3"]
    assert np.count_nonzero(ds[0].mask) == 20 * 60 and np.count_nonzero(ds[1].mask) == 100
    archive = tmp_path / Path(where).parts[0]  # named by its path: the set's folder or the archive's top
    assert len(load_iseg_dataset(str(archive), tmp_path / "elsewhere")) == 2

    (sbd / "inst" / "2008_000002.mat").write_bytes(b"MATLAB 5.0 MAT-file")  # cut short by a copy
    with pytest.raises(MSTGeoError, match="not an SBD instance file") as error:
        load_iseg_dataset("SBD", tmp_path)
    assert "2008_000002.mat" in str(error.value)
    (sbd / "inst" / "2008_000002.mat").unlink()  # listed in val.txt, never copied
    with pytest.raises(MSTGeoError, match=r"2008_000002.mat: SBD instance file not found"):
        load_iseg_dataset("SBD", tmp_path)[0]


def test_coco_lvis_layout_rasterises_polygons(iseg_root, tmp_path):
    split = tmp_path / "COCO_LVIS" / "val"
    (split / "images").mkdir(parents=True)
    shutil.copy(_real_photo(iseg_root), split / "images" / "000000397133.jpg")
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    lvis = {
        "images": [
            {"id": 397133, "height": height, "width": width,
             "coco_url": "http://images.cocodataset.org/val2017/000000397133.jpg"}
        ],
        "annotations": [
            {"id": 7, "image_id": 397133, "category_id": 3,
             "segmentation": [[10, 10, 109, 10, 109, 49, 10, 49]]},
            {"id": 9, "image_id": 397133, "category_id": 5,
             "segmentation": [[200, 100, 220, 100, 220, 120, 200, 120], [300, 100, 310, 100, 310, 110, 300, 110]]},
        ],
    }
    (split / "lvis_val.json").write_text(json.dumps(lvis))

    ds = load_iseg_dataset("COCO+LVIS", tmp_path)
    assert [ref.name for ref in ds.refs] == ["000000397133_7", "000000397133_9"]
    box = ds[0].mask
    assert box[10:50, 10:110].all() and np.count_nonzero(box) == 100 * 40
    assert np.count_nonzero(ds[1].mask) == 21 * 21 + 11 * 11


def _write_packed_split(split: Path, photo: Path, pack: object) -> None:
    """A split of RITM's packed COCO+LVIS layout holding one image (id 42) and its mask pack."""
    (split / "images").mkdir(parents=True)
    (split / "masks").mkdir()
    shutil.copy(photo, split / "images" / "42.jpg")
    with (split / "hannotation.pickle").open("wb") as file:
        index = {"42": {"num_instance_masks": 2, "hierarchy": {0: None, 1: {"parent": 0, "children": [], "tags": {"b"}}}}}
        pickle.dump(index, file, protocol=2)  # sets and Python 2 module names, as old pickles write them
    with (split / "masks" / "42.pickle").open("wb") as file:
        pickle.dump(pack, file)


def test_ritm_packed_coco_lvis_reads_objects_from_label_layers(iseg_root, tmp_path):
    """RITM's distribution of COCO+LVIS: label layers PNG-encoded in a pickle per image, each
    object a (layer, value) pair; the entries past num_instance_masks are stuff, never listed."""
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    things, stuff = np.zeros((height, width), np.uint8), np.zeros((height, width), np.uint8)
    things[10:50, 10:110] = 3  # object 0
    things[100:120, 200:230] = 5  # object 1, inside object 0's ...
    stuff[5:60, 5:120] = 1  # ... and a stuff region over both
    layers = [cv2.imencode(".png", layer)[1] for layer in (things, stuff)]
    _write_packed_split(tmp_path / "cocolvis" / "train", _real_photo(iseg_root), (layers, [(0, 3), (0, 5), (1, 1)]))

    ds = load_iseg_dataset("COCO_LVIS", tmp_path, split="train")
    assert [ref.name for ref in ds.refs] == ["42_0", "42_1"]
    first, second = ds[0], ds[1]
    assert first.image.shape[:2] == (height, width) and first.image_id == "42"
    assert np.count_nonzero(first.mask) == 40 * 100 and first.mask[10:50, 10:110].all()
    assert np.count_nonzero(second.mask) == 20 * 30 and second.mask[100:120, 200:230].all()
    # as RITM's files were written: numpy 1 (numpy.core) and an older pickle protocol
    numpy1 = pickle.dumps((layers, [(0, 3), (0, 5), (1, 1)]), protocol=2).replace(b"numpy._core", b"numpy.core")
    (tmp_path / "cocolvis" / "train" / "masks" / "42.pickle").write_bytes(numpy1)
    assert np.array_equal(ds[1].mask, second.mask)


def test_a_packed_annotation_that_would_run_code_is_refused(iseg_root, tmp_path):
    """A pickle naming anything but numpy's array machinery is refused before it runs; a pack that
    lacks the object is a one-line error naming the file."""
    import os

    class RunsCode:
        def __reduce__(self):
            return os.getcwd, ()

    split = tmp_path / "COCO_LVIS" / "train"
    _write_packed_split(split, _real_photo(iseg_root), RunsCode())
    ds = load_iseg_dataset("COCO_LVIS", tmp_path, split="train")
    with pytest.raises(MSTGeoError, match=r"42.pickle: not a readable RITM mask pack \(it names posix.getcwd"):
        ds[0]
    with (split / "masks" / "42.pickle").open("wb") as file:
        pickle.dump(([cv2.imencode(".png", np.ones((4, 4), np.uint8))[1]], [(0, 1)]), file)
    with pytest.raises(MSTGeoError, match=r"42.pickle: not a RITM mask pack with object 1"):
        ds[1]
    (split / "hannotation.pickle").write_bytes(b"not a pickle")
    with pytest.raises(MSTGeoError, match=r"hannotation.pickle: not a readable RITM annotation index"):
        load_iseg_dataset("COCO_LVIS", tmp_path, split="train")
    (split / "hannotation.pickle").unlink()
    with pytest.raises(MSTGeoError, match=r"neither RITM's packed annotations \(hannotation.pickle\) nor an LVIS"):
        load_iseg_dataset("COCO_LVIS", tmp_path, split="train")


def test_user_errors_are_clear(iseg_root, tmp_path):
    with pytest.raises(MSTGeoError, match="data root is not a folder"):
        load_iseg_dataset("GrabCut", tmp_path / "nope")
    with pytest.raises(MSTGeoError, match="unknown dataset 'Grabcutt'.*GrabCut, Berkeley"):
        load_iseg_dataset("Grabcutt", iseg_root)
    with pytest.raises(MSTGeoError, match="no DAVIS folder here"):
        load_iseg_dataset("DAVIS", iseg_root)
    (tmp_path / "GrabCut" / "data_GT").mkdir(parents=True)
    with pytest.raises(MSTGeoError, match="boundary_GT: folder missing"):
        load_iseg_dataset("GrabCut", tmp_path)
    assert known_name("coco_mval") == "COCO_MVal"


def _davis_with_mask(iseg_root: Path, root: Path, mask: np.ndarray, name: str = "bear") -> Path:
    davis = root / "DAVIS"
    (davis / "img").mkdir(parents=True, exist_ok=True)
    (davis / "gt").mkdir(exist_ok=True)
    shutil.copy(_real_photo(iseg_root), davis / "img" / f"{name}.jpg")
    Image.fromarray(mask).save(davis / "gt" / f"{name}.png")
    return davis


def test_davis_masks_follow_ritm_any_value_above_zero(iseg_root, tmp_path):
    """RITM reads DAVIS/COCO_MVal masks as object where > 0: an antialiased edge belongs to the
    object, and a mask stored as 0/1 is not empty."""
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[50:100, 50:100] = 1  # stored as 0/1
    mask[49, 50:100] = 40  # an antialiased edge row
    _davis_with_mask(iseg_root, tmp_path, mask)
    instance = load_iseg_dataset("DAVIS", tmp_path)[0]
    assert np.count_nonzero(instance.mask == 1) == 51 * 50 and set(np.unique(instance.mask)) == {0, 1}
    with pytest.raises(MSTGeoError, match="no DAVIS folder here .*; this looks like the DAVIS folder itself: the data "
                                          "root is the folder holding it"):
        load_iseg_dataset("DAVIS", tmp_path / "DAVIS")


def test_empty_masks_and_stray_files(iseg_root, tmp_path):
    """A mask without object pixels is an error naming it (scored, it would be a free perfect
    instance); macOS ._ copies are not instances; a mask is never paired with an image of
    another name (bears.png is not bear.jpg's)."""
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    davis = _davis_with_mask(iseg_root, tmp_path, mask)
    with pytest.raises(MSTGeoError, match="mask holds no object pixel") as error:
        load_iseg_dataset("DAVIS", tmp_path)[0]
    assert "bear.png" in str(error.value)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(davis / "gt" / "bear.png")
    (davis / "img" / "._bear.jpg").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble resource fork
    (davis / "gt" / "._bear.png").write_bytes(b"\x00\x05\x16\x07")
    assert [ref.name for ref in load_iseg_dataset("DAVIS", tmp_path).refs] == ["bear"]
    Image.fromarray(mask).save(davis / "gt" / "bears.png")  # a mask without its image is no instance
    assert [ref.name for ref in load_iseg_dataset("DAVIS", tmp_path).refs] == ["bear"]
    shutil.copy(davis / "img" / "bear.jpg", davis / "img" / "lynx.jpg")  # an image without its mask
    with pytest.raises(MSTGeoError, match="no mask lynx") as error:
        load_iseg_dataset("DAVIS", tmp_path)
    assert "lynx.jpg" in str(error.value)
    (davis / "img" / "lynx.jpg").rename(davis / "img" / "bear.png")  # one stem, two images: not two objects
    with pytest.raises(MSTGeoError, match="two images named 'bear'"):
        load_iseg_dataset("DAVIS", tmp_path)


def test_mask_alpha_is_not_an_object(iseg_root, tmp_path):
    """A DAVIS mask saved with an opaque alpha channel (RGBA or grey + alpha) is read without it,
    as RITM reads masks; with it, every pixel would be object."""
    height, width = np.asarray(Image.open(_real_photo(iseg_root))).shape[:2]
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[10:20, 10:30] = 255
    davis = _davis_with_mask(iseg_root, tmp_path, mask)
    opaque = np.full_like(mask, 255)
    for mode, bands in (("RGBA", (mask, mask, mask, opaque)), ("LA", (mask, opaque))):
        Image.fromarray(np.dstack(bands), mode).save(davis / "gt" / "bear.png")
        assert int(load_iseg_dataset("DAVIS", tmp_path)[0].mask.sum()) == 200, mode


@pytest.mark.parametrize(("given", "known"), [("coco-mval", "COCO_MVal"), ("COCO+LVIS", "COCO_LVIS"),
                                               ("pascal_voc", "PascalVOC"), ("VOC", "PascalVOC"), ("sbd", "SBD")])
def test_dataset_names_ignore_case_and_separators(given, known):
    assert known_name(given) == known


def _images_folder_set(iseg_root: Path, folder: Path, image_dir: str = "img", mask_dir: str = "gt") -> np.ndarray:
    """A set in RITM's images-folder layout: one real photo, two objects (``_0``/``_1``) and a
    trimap mask of another photo; returns the photo's real GrabCut object mask."""
    (folder / image_dir).mkdir(parents=True)
    (folder / mask_dir).mkdir()
    shutil.copy(_real_photo(iseg_root), folder / image_dir / "cell_7.jpg")
    shutil.copy(iseg_root / "GrabCut" / "data_GT" / "124080.jpg", folder / image_dir / "slice.jpg")
    trimap = np.asarray(Image.open(iseg_root / "GrabCut" / "boundary_GT" / "124080.bmp").convert("L"))
    Image.fromarray(trimap).save(folder / mask_dir / "slice.png")
    grabcut = np.asarray(Image.open(iseg_root / "GrabCut" / "boundary_GT" / "106024.bmp").convert("L"))
    obj = (grabcut > 128).astype(np.uint8)
    left = obj.copy()
    left[:, obj.shape[1] // 2:] = 0
    Image.fromarray(left).save(folder / mask_dir / "cell_7_0.png")  # a 0/1 mask
    Image.fromarray((obj - left) * 255).save(folder / mask_dir / "cell_7_1.png")  # a 0/255 mask
    return obj


def test_images_without_a_mask_are_named_when_left_out(iseg_root, tmp_path):
    """A generic set pairs images with masks by name: an image whose mask is missing (lost in a
    copy, more often than meant) is left out with a warning naming it, not silently."""
    folder = tmp_path / "mine"
    (folder / "img").mkdir(parents=True)
    (folder / "gt").mkdir()
    for stem in ("a", "b", "c"):
        shutil.copy(_real_photo(iseg_root), folder / "img" / f"{stem}.jpg")
    mask = np.zeros(np.asarray(Image.open(_real_photo(iseg_root))).shape[:2], np.uint8)
    mask[10:50, 10:50] = 255
    Image.fromarray(mask).save(folder / "gt" / "b.png")
    with pytest.warns(MSTGeoWarning, match=r"mine: 2 of 3 images have no mask in gt/ and are left out \(a, c\)"):
        ds = load_iseg_dataset(str(folder), "/nonexistent")
    assert [ref.name for ref in ds.refs] == ["b"]


@pytest.mark.parametrize(("image_dir", "mask_dir"), [("img", "gt"), ("images", "masks"), ("Images", "Labels")])
def test_any_other_set_in_the_images_folder_layout(iseg_root, tmp_path, image_dir, mask_dir):
    """Sets without a layout of their own (one's own photos, say), read like RITM's
    ImagesDirDataset, by name under the root (any case) or by the folder's path."""
    obj = _images_folder_set(iseg_root, tmp_path / "ssTEM", image_dir, mask_dir)
    by_name = load_iseg_dataset("sstem", tmp_path)
    by_path = load_iseg_dataset(str(tmp_path / "ssTEM"), "/nonexistent")
    assert by_name.name == by_path.name == "ssTEM"
    assert [r.name for r in by_name.refs] == [r.name for r in by_path.refs] == ["cell_7_0", "cell_7_1", "slice"]
    assert [r.image_path.name for r in by_name.refs] == ["cell_7.jpg", "cell_7.jpg", "slice.jpg"]
    first, second, trimap = by_name[0], by_name[1], by_name[2]
    assert first.image_id == second.image_id == "cell_7"
    assert set(np.unique(first.mask)) == set(np.unique(second.mask)) == {0, 1}
    assert np.array_equal(first.mask | second.mask, obj) and not (first.mask & second.mask).any()
    raw = np.asarray(Image.open(iseg_root / "GrabCut" / "boundary_GT" / "124080.bmp").convert("L"))
    assert np.array_equal(trimap.mask == 255, raw == 128)  # the trimap's unknown band is ignored
    assert np.array_equal(trimap.mask == 1, raw > 128)


def test_images_folder_layout_errors_name_the_folder(iseg_root, tmp_path):
    (tmp_path / "Mine" / "photos").mkdir(parents=True)
    with pytest.raises(MSTGeoError, match="not a known dataset, nor an image folder .* beside a mask folder .* found by their folder.s name") as error:
        load_iseg_dataset("Mine", tmp_path)
    assert str(tmp_path / "Mine") in str(error.value)
    with pytest.raises(MSTGeoError, match="unknown dataset 'Nothere': no folder of that name") as error:
        load_iseg_dataset("Nothere", tmp_path)
    assert str(tmp_path) in str(error.value)
    (tmp_path / "Mine" / "img").mkdir()
    (tmp_path / "Mine" / "gt").mkdir()
    shutil.copy(_real_photo(iseg_root), tmp_path / "Mine" / "img" / "a.jpg")
    Image.fromarray(np.ones((5, 5), np.uint8)).save(tmp_path / "Mine" / "gt" / "b.png")
    with pytest.raises(MSTGeoError, match="no image with the same name for this mask"):
        load_iseg_dataset("Mine", tmp_path)


DUTS_ID = "ILSVRC2012_test_00000004"


def _grabcut_object(iseg_root: Path, stem: str = "106024") -> np.ndarray:
    return np.asarray(Image.open(iseg_root / "GrabCut" / "boundary_GT" / f"{stem}.bmp").convert("L")) > 128


def test_images_folder_masks_are_read_by_what_their_values_are(iseg_root, tmp_path):
    """Label maps (OAIZIB's 1/2 cartilages, a DAVIS-2017 palette, colour masks) give one object per
    label with 255 beside them void; a JPEG-compressed 0/255 mask is cut at half its range."""
    obj = _grabcut_object(iseg_root)
    left = obj.copy()
    left[:, obj.shape[1] // 2:] = False
    right = obj & ~left
    folder = tmp_path / "OAIZIB" / "test"
    (folder / "image").mkdir(parents=True)
    (folder / "annotations").mkdir()
    for stem in ("labels", "voc", "palette", "colour", "jpeg"):
        shutil.copy(_real_photo(iseg_root), folder / "image" / f"{stem}.png")
    labels = left * 1 + right * 2
    Image.fromarray(labels.astype(np.uint8)).save(folder / "annotations" / "labels.png")
    void = labels.astype(np.uint8)
    void[:5] = 255  # a VOC-style void band
    Image.fromarray(void).save(folder / "annotations" / "voc.png")
    palette = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    palette.save(folder / "annotations" / "palette.png")
    colours = np.zeros((*obj.shape, 3), np.uint8)
    colours[left] = (0, 200, 0)
    colours[right] = (200, 0, 0)
    Image.fromarray(colours).save(folder / "annotations" / "colour.png")
    Image.fromarray(obj.astype(np.uint8) * 255).save(folder / "annotations" / "jpeg.jpg", quality=60)

    dataset = load_iseg_dataset(str(folder), "/nonexistent")
    by_name = {ref.name: dataset[k] for k, ref in enumerate(dataset.refs)}
    assert sorted(by_name) == ["colour_1", "colour_2", "jpeg", "labels_1", "labels_2", "palette_1", "palette_2",
                               "voc_1", "voc_2"]
    for stem in ("labels", "palette"):
        assert np.array_equal(by_name[f"{stem}_1"].mask, left) and np.array_equal(by_name[f"{stem}_2"].mask, right)
    assert {tuple(np.unique(by_name[f"colour_{k}"].mask)) for k in (1, 2)} == {(0, 1)}
    assert {np.count_nonzero(by_name[f"colour_{k}"].mask) for k in (1, 2)} == {left.sum(), right.sum()}
    assert (by_name["voc_1"].mask[:5] == 255).all() and np.array_equal(by_name["voc_1"].mask[5:], left[5:])
    jpeg = by_name["jpeg"].mask == 1
    assert abs(int(jpeg.sum()) - int(obj.sum())) < 0.01 * obj.sum()  # not grown by the artefacts
    raw = np.asarray(Image.open(folder / "annotations" / "jpeg.jpg"))
    assert np.count_nonzero(raw) > 1.02 * obj.sum()  # "above 0" would have grown it


def test_images_folder_masks_in_other_encodings(iseg_root, tmp_path):
    """16-bit 0/255, a 16-bit label map with a 255 void ring, grey+alpha, a 0/255 palette mask, VOC
    colours re-saved as RGB (void ring included) and a soft float mask: each is one object, the void
    rings ignored."""
    obj = _grabcut_object(iseg_root)
    folder = tmp_path / "Encodings"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    stems = ("u16", "u16_void", "la", "palette", "voc_rgb", "soft")
    for stem in stems:
        shutil.copy(_real_photo(iseg_root), folder / "images" / f"{stem}.jpg")
    Image.fromarray(obj.astype(np.uint16) * 255).save(folder / "masks" / "u16.png")
    ring = cv2.dilate(obj.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~obj
    Image.fromarray(np.where(ring, 255, obj).astype(np.uint16)).save(folder / "masks" / "u16_void.png")
    grey = Image.fromarray(obj.astype(np.uint8) * 255)
    Image.merge("LA", (grey, Image.new("L", grey.size, 255))).save(folder / "masks" / "la.png")
    palette = Image.fromarray(obj.astype(np.uint8) * 255, mode="P")
    palette.putpalette([0, 0, 0] * 255 + [255, 255, 255])
    palette.save(folder / "masks" / "palette.png")
    voc = np.zeros((*obj.shape, 3), np.uint8)
    voc[obj] = (128, 0, 0)
    voc[ring] = (224, 224, 192)
    Image.fromarray(voc).save(folder / "masks" / "voc_rgb.png")
    soft = cv2.GaussianBlur(obj.astype(np.float32), (9, 9), 0)
    Image.fromarray(soft, mode="F").save(folder / "masks" / "soft.tif")
    dataset = load_iseg_dataset(str(folder), "/nonexistent")
    assert [ref.name for ref in dataset.refs] == sorted(stems)
    for k, ref in enumerate(dataset.refs):
        mask = dataset[k].mask
        if ref.name == "soft":
            assert abs(int((mask == 1).sum()) - int(obj.sum())) < 0.02 * obj.sum()
        else:
            assert np.array_equal(mask == 1, obj), ref.name
        assert np.array_equal(mask == 255, ring) if ref.name in ("voc_rgb", "u16_void") else not (mask == 255).any()


def test_known_sets_as_their_archives_unpack_or_under_other_names(iseg_root, tmp_path):
    """The official DUTS-TR folder (DUTS-TR-Image, DUTS-TR-Mask) is DUTS_TR; a GrabCut copy under
    another name is GrabCut (and so never trained on); two objects of one name are refused."""
    duts = tmp_path / "DUTS-TR"
    (duts / "DUTS-TR-Image").mkdir(parents=True)
    (duts / "DUTS-TR-Mask").mkdir()
    shutil.copy(iseg_root / "DUTS_TR" / "img" / f"{DUTS_ID}.jpg", duts / "DUTS-TR-Image" / f"{DUTS_ID}.jpg")
    shutil.copy(iseg_root / "DUTS_TR" / "gt" / f"{DUTS_ID}.png", duts / "DUTS-TR-Mask" / f"{DUTS_ID}.png")
    dataset = load_iseg_dataset("DUTS-TR", tmp_path)
    assert dataset.name == "DUTS_TR" and [ref.name for ref in dataset.refs] == [DUTS_ID]
    reference = load_iseg_dataset("DUTS_TR", iseg_root)
    position = [ref.name for ref in reference.refs].index(DUTS_ID)
    assert np.array_equal(dataset[0].mask, reference[position].mask)  # the same rule as its own layout
    copy = tmp_path / "my_gc"
    shutil.copytree(iseg_root / "GrabCut", copy)
    assert load_iseg_dataset(str(copy), "/nonexistent").name == "GrabCut"
    from mst_geo.train.instances import build_split

    with pytest.raises(MSTGeoError, match="GrabCut: benchmark set"):
        build_split(tmp_path, [str(copy)], 0.1)
    labels = tmp_path / "Clash"
    (labels / "img").mkdir(parents=True)
    (labels / "gt").mkdir()
    shutil.copy(_real_photo(iseg_root), labels / "img" / "a.jpg")
    Image.fromarray((_grabcut_object(iseg_root) * 1).astype(np.uint8) + 1).save(labels / "gt" / "a.png")  # labels 1, 2
    Image.fromarray(_grabcut_object(iseg_root).astype(np.uint8)).save(labels / "gt" / "a_1.png")
    with pytest.raises(MSTGeoError, match="two objects would both be named 'a_1'"):
        load_iseg_dataset("Clash", tmp_path)


def test_images_folder_names_and_pairing_variants(iseg_root, tmp_path):
    """The DUTS-TR archive's own folder names, ``<stem>_mask`` masks, WebP images; two images of
    one stem are refused rather than one picked."""
    folder = tmp_path / "DUTS-TR-archive"
    (folder / "DUTS-TR-Image").mkdir(parents=True)
    (folder / "DUTS-TR-Mask").mkdir()
    cv2.imwrite(str(folder / "DUTS-TR-Image" / "a.webp"), cv2.imread(str(_real_photo(iseg_root))))
    Image.fromarray(_grabcut_object(iseg_root).astype(np.uint8) * 255).save(folder / "DUTS-TR-Mask" / "a_mask.png")
    dataset = load_iseg_dataset(str(folder), "/nonexistent")
    assert [(r.image_path.name, r.name) for r in dataset.refs] == [("a.webp", "a_mask")]
    assert np.array_equal(dataset[0].mask, _grabcut_object(iseg_root))
    shutil.copy(_real_photo(iseg_root), folder / "DUTS-TR-Image" / "a.jpg")
    with pytest.raises(MSTGeoError, match="two images named 'a' \\(a.jpg, a.webp\\); keep one"):
        load_iseg_dataset(str(folder), "/nonexistent")
    (folder / "images_test").mkdir()
    with pytest.raises(MSTGeoError, match="several candidate folders \\(DUTS-TR-Image, images_test\\)"):
        load_iseg_dataset(str(folder), "/nonexistent")


def test_known_sets_in_folders_spelled_otherwise_and_exif_photos(iseg_root, tmp_path):
    """``davis/`` is DAVIS; a photo's EXIF orientation is not applied (masks are drawn on the
    stored pixels)."""
    obj = _grabcut_object(iseg_root)
    davis = tmp_path / "davis"
    (davis / "img").mkdir(parents=True)
    (davis / "gt").mkdir()
    photo = Image.open(_real_photo(iseg_root))
    exif = photo.getexif()
    exif[274] = 6  # "rotate 90° to display"
    photo.save(davis / "img" / "turned.jpg", exif=exif, quality=95)
    Image.fromarray(obj.astype(np.uint8)).save(davis / "gt" / "turned.png")
    dataset = load_iseg_dataset("DAVIS", tmp_path)
    assert dataset.name == "DAVIS" and dataset[0].image.shape[:2] == obj.shape
    stored = np.asarray(Image.open(davis / "img" / "turned.jpg").convert("RGB"))
    assert np.abs(dataset[0].image.astype(int) - stored).mean() < 1  # the stored pixels, not turned


def test_images_folder_masks_with_nothing_in_them_are_errors(iseg_root, tmp_path):
    """An opaque all-black RGBA mask and a VOC mask of background and void hold no object (the
    alpha or the void colour must not become a full-frame or ring object)."""
    folder = tmp_path / "Empty"
    (folder / "img").mkdir(parents=True)
    (folder / "gt").mkdir()
    shutil.copy(_real_photo(iseg_root), folder / "img" / "a.jpg")
    shape = _grabcut_object(iseg_root).shape
    Image.new("RGBA", shape[::-1], (0, 0, 0, 255)).save(folder / "gt" / "a.png")
    with pytest.raises(MSTGeoError, match="a.png: mask holds no object pixel"):
        load_iseg_dataset(str(folder), "/nonexistent")[0]
    voc = np.zeros((*shape, 3), np.uint8)
    voc[:5] = (224, 224, 192)
    Image.fromarray(voc).save(folder / "gt" / "a.png")
    with pytest.raises(MSTGeoError, match="a.png: mask holds no object pixel"):
        load_iseg_dataset(str(folder), "/nonexistent")[0]


def test_simpleclick_medical_sets(iseg_root, tmp_path):
    """ssTEM (every 8-connected mitochondrion one object, as SimpleClick's code counts them: two
    blobs touching at a corner are one)
    and OAI-ZIB (every label of a slice one object, test split by default), as SimpleClick lays
    them out."""
    photo = np.asarray(Image.open(_real_photo(iseg_root)).convert("L"))
    sstem = tmp_path / "ssTEM"
    (sstem / "raw").mkdir(parents=True)
    (sstem / "mitochondria").mkdir()
    Image.fromarray(photo).save(sstem / "raw" / "slice00.tif")
    blobs = np.zeros(photo.shape, np.uint8)
    blobs[10:20, 10:20] = 255
    blobs[20:30, 20:30] = 255  # touches the first at one corner only
    blobs[100:140, 200:260] = 255
    Image.fromarray(blobs).save(sstem / "mitochondria" / "slice00.png")
    cells = load_iseg_dataset("ssTEM", tmp_path)
    assert [ref.name for ref in cells.refs] == ["slice00_1", "slice00_2"]
    assert sorted(int(cells[k].mask.sum()) for k in range(2)) == [200, 2400]
    assert cells[0].image.shape == (*photo.shape, 3)
    for published in ("ssTEM/stack1", "groundtruth-drosophila-vnc/stack1"):  # the data's own repository
        root = tmp_path / published.replace("/", "_")
        shutil.copytree(sstem, root / published)
        from_repository = load_iseg_dataset("ssTEM", root)
        assert from_repository.folder == root / published and len(from_repository) == 2
        for path in (root / published, root / published.split("/")[0]):  # its folder's path, by any name
            by_path = load_iseg_dataset(str(path), "/nonexistent")
            assert (by_path.name, by_path.folder, len(by_path)) == ("ssTEM", root / published, 2)

    oai = tmp_path / "OAI-ZIB" / "iseg_slices"  # as SimpleClick's config points at it
    for split in ("train", "test"):
        (oai / split / "image").mkdir(parents=True)
        (oai / split / "annotations").mkdir()
        labels = np.zeros(photo.shape, np.uint8)
        for stem in ("9001_001", "9001_040"):  # the first slice holds no cartilage: no object
            Image.fromarray(photo).save(oai / split / "image" / f"{stem}.png")
            Image.fromarray(labels).save(oai / split / "annotations" / f"{stem}.png")
            labels[50:80, 50:150] = 1  # femoral cartilage
            labels[90:110, 60:140] = 2  # tibial cartilage
    test = load_iseg_dataset("OAIZIB", tmp_path)
    assert test.name == "OAIZIB" and [ref.name for ref in test.refs] == ["9001_040_1", "9001_040_2"]
    assert [int(test[k].mask.sum()) for k in range(2)] == [3000, 1600]
    assert test.refs[0].image_path.parent.parent.name == "test"
    assert load_iseg_dataset("OAIZIB", tmp_path, split="train").refs[0].image_path.parent.parent.name == "train"
    flat = tmp_path / "flat"
    shutil.copytree(oai / "test", flat / "OAIZIB")  # one slice folder, no split
    assert [ref.name for ref in load_iseg_dataset("OAIZIB", flat).refs] == ["9001_040_1", "9001_040_2"]
    labels[labels == 1], labels[labels == 2] = 128, 255  # any label values: every value above 0 is an object
    Image.fromarray(labels).save(flat / "OAIZIB" / "annotations" / "9001_040.png")
    wide = load_iseg_dataset("OAIZIB", flat)
    assert [ref.name for ref in wide.refs] == ["9001_040_128", "9001_040_255"]
    assert [int(wide[k].mask.sum()) for k in range(2)] == [3000, 1600]

    own_em = tmp_path / "MyEM"  # an images-folder set that also keeps a mitochondria/ folder is not ssTEM
    for folder in ("images", "masks", "mitochondria"):
        (own_em / folder).mkdir(parents=True)
    Image.fromarray(photo).save(own_em / "images" / "a.png")
    Image.fromarray(blobs).save(own_em / "masks" / "a.png")
    assert [ref.name for ref in load_iseg_dataset("MyEM", tmp_path).refs] == ["a"]


def test_davis585_as_clickseg_lays_it_out(iseg_root, tmp_path):
    """One folder per sequence: frames as <frame>.jpg, objects as <object>_<frame>.png (above 128),
    the mask-correction protocol's init_* masks left out."""
    obj = _grabcut_object(iseg_root)
    bear = tmp_path / "DAVIS-585" / "bear"
    bear.mkdir(parents=True)
    shutil.copy(_real_photo(iseg_root), bear / "00009.jpg")
    mask = (obj * 255).astype(np.uint8)
    mask[obj & (np.arange(obj.shape[1]) < 40)] = 128  # at 128: not the object for ClickSEG
    Image.fromarray(mask).save(bear / "object1_00009.png")
    Image.fromarray(mask).save(bear / "init_stm_object1_00009.png")
    dataset = load_iseg_dataset("D585", tmp_path)
    assert dataset.name == "DAVIS585" and [ref.name for ref in dataset.refs] == ["bear_object1_00009"]
    assert np.array_equal(dataset[0].mask == 1, mask > 128) and dataset[0].image_id == "bear_00009"


def test_unreadable_image_files_are_one_line(tmp_path, capfd):
    """A listed image that is missing (a VOC id without its JPEG) or is no image: one line naming
    it, and no OpenCV warning printed before it."""
    from mst_geo.data.instance import read_rgb

    with pytest.raises(MSTGeoError, match="image file not found") as missing:
        read_rgb(tmp_path / "2007_000032.jpg")
    assert "2007_000032.jpg" in str(missing.value)
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(MSTGeoError, match="cannot read this image \\(not an image file OpenCV reads\\)"):
        read_rgb(tmp_path / "notes.jpg")
    assert "WARN" not in capfd.readouterr().err
