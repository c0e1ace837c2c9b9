"""Brain tumour MRI (.mat v7.3 + PNG), REFUGE, PanNuke and CT NIfTI adapters on layout-faithful fixtures."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from medfm_hf.sources import load_source
from medfm_hf.sources.ct_nifti import apply_window


def _write_cjdata(path, image, mask, label, pid):
    """A figshare-style MATLAB v7.3 file: HDF5, arrays stored transposed, PID as UTF-16 code units."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("cjdata")
        g["image"] = np.asarray(image).T
        g["tumorMask"] = np.asarray(mask, np.uint8).T
        g["label"] = np.array([[float(label)]])
        g["PID"] = np.array([[ord(c)] for c in pid], np.uint16)
        g["tumorBorder"] = np.zeros((1, 4))


def test_brain_tumor_mat_release(tmp_path, rng):
    root = tmp_path / "figshare"
    images = {}
    for n in range(1, 9):
        img = rng.integers(0, 3000, (32, 40)).astype(np.int16)  # int16 as in the release (non-square on purpose)
        mask = np.zeros((32, 40), bool)
        mask[5 : 10 + n, 8:20] = True
        images[n] = (img, mask)
        sub = "brainTumorDataPublic_1-766" if n <= 4 else "brainTumorDataPublic_767-1532"
        _write_cjdata(root / sub / f"{n}.mat", img, mask, label=1 + n % 3, pid=f"10{n // 3}")
    (root / "brainTumorDataPublic_1-766" / "99.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    _write_cjdata(root / "x" / "100.mat", -np.ones((4, 4), np.int16), np.zeros((4, 4)), 1, "7")
    (root / "cvind.mat").write_bytes(b"not read")
    sf = tmp_path / "s.json"
    recs, report = load_source("brain_tumor_mri", str(root), split_file=str(sf))
    by_id = {r.image_id: r for r in recs}
    assert set(by_id) == {f"brain_tumor_mri/{n}" for n in range(1, 9)}
    for n, (img, mask) in images.items():
        r = by_id[f"brain_tumor_mri/{n}"]
        r.validate()
        assert r.image.dtype == np.uint16 and np.array_equal(r.image, img.astype(np.uint16))  # transposed back
        assert np.array_equal(r.mask, mask) and r.modality == "mri"
        assert r.meta["tumour_type"] == {1: "meningioma", 2: "glioma", 3: "pituitary"}[1 + n % 3]
    # one patient never straddles two splits
    by_patient: dict[str, set[str]] = {}
    for r in recs:
        by_patient.setdefault(r.meta["patient"], set()).add(r.split)
    assert all(len(s) == 1 for s in by_patient.values())
    assert set(json.loads(sf.read_text())["sources"]["brain_tumor_mri"]["assignments"]) == {
        f"patient:{p}" for p in by_patient}
    skipped = {i.item: i.reason for i in report.skipped}
    assert "unreadable .mat" in skipped["brainTumorDataPublic_1-766/99.mat"]
    assert "do not fit uint16" in skipped["x/100.mat"]
    assert {r.split for r in load_source("brain_tumor_mri", str(root), fractions="0/0/1")[0]} == {"test"}


def test_brain_tumor_png_repackaging(tmp_path, fx, rng):
    root = tmp_path / "kaggle"
    for n in (1, 2, 3):
        fx.write(root / "images" / f"{n}.png", fx.grey(rng, 30, 30))
        fx.write(root / "masks" / f"{n}.png", fx.rect(30, 30, 1, 5 + n, 2, 9))
    fx.write(root / "images" / "4.png", fx.grey(rng, 30, 30, dtype=np.uint16))
    fx.write(root / "masks" / "4.png", fx.rect(30, 30, 1, 5, 2, 9))
    fx.write(root / "images" / "5.png", fx.grey(rng, 30, 30))  # no mask
    recs, report = load_source("brain_tumor_mri", str(root))
    assert [r.image_id for r in recs] == [f"brain_tumor_mri/{n}" for n in (1, 2, 3, 4)]
    assert recs[2].bbox == [2, 1, 9, 8] and recs[3].image.dtype == np.uint16
    assert [i.item for i in report.skipped] == ["images/5.png"]


def test_brain_tumor_layout_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no \*\.mat files and no images/ \+ masks/"):
        load_source("brain_tumor_mri", str(tmp_path))


def _label_map(h, w, cy, cx, r_disc, r_cup):
    yy, xx = np.mgrid[:h, :w]
    d = (yy - cy) ** 2 + (xx - cx) ** 2
    lab = np.full((h, w), 255, np.uint8)
    lab[d < r_disc**2] = 128
    lab[d < r_cup**2] = 0
    return lab


def test_refuge_official_layout_disc_and_cup(tmp_path, fx, rng):
    root = tmp_path / "REFUGE"
    maps, expected_glaucoma = {}, {}
    for sub, stem, gl in (("Glaucoma", "g0001", True), ("Non-Glaucoma", "n0001", False), ("Non-Glaucoma", "n0002", False)):
        fx.write(root / "Training400" / sub / f"{stem}.jpg", fx.rgb(rng, 40, 40))
        maps[stem] = _label_map(40, 40, 20, 20, 12, 5)
        fx.write(root / "Annotation-Training400" / "Disc_Cup_Masks" / sub / f"{stem}.bmp", maps[stem])
        expected_glaucoma[stem] = gl
    fx.write(root / "REFUGE-Validation400" / "V0001.jpg", fx.rgb(rng, 40, 40))
    lossy = _label_map(40, 40, 15, 18, 10, 4)
    lossy[0, 0] = 250  # a pixel off the three levels -> snapped + flagged
    fx.write(root / "REFUGE-Validation400-GT" / "Disc_Cup_Masks" / "V0001.bmp", lossy)
    fx.write(root / "REFUGE-Test400" / "T0001.png", fx.rgb(rng, 40, 40).astype(np.uint16) * 257)  # 16-bit
    fx.write(root / "REFUGE-Test-GT" / "Disc_Cup_Masks" / "T0001.bmp", _label_map(40, 40, 20, 20, 8, 0))  # no cup
    fx.truncate(fx.write(root / "REFUGE-Test400" / "T0002.jpg", fx.rgb(rng, 40, 40)))
    fx.write(root / "REFUGE-Test-GT" / "Disc_Cup_Masks" / "T0002.bmp", _label_map(40, 40, 20, 20, 8, 3))
    recs, report = load_source("refuge", str(root))
    by_id = {r.image_id: r for r in recs}
    for r in recs:
        r.validate()
    assert {r.split for r in recs if r.image_id.startswith("refuge/V")} == {"validation"}
    assert {r.split for r in recs if r.image_id.startswith("refuge/T")} == {"test"}
    assert {r.split for r in recs if r.image_id.startswith(("refuge/g", "refuge/n"))} == {"train"}
    disc, cup = by_id["refuge/g0001_disc"], by_id["refuge/g0001_cup"]
    assert np.array_equal(disc.mask, maps["g0001"] < 255) and np.array_equal(cup.mask, maps["g0001"] == 0)
    for stem, gl in expected_glaucoma.items():
        assert by_id[f"refuge/{stem}_disc"].meta["glaucoma"] is gl and by_id[f"refuge/{stem}_cup"].meta["glaucoma"] is gl
    assert by_id["refuge/V0001_disc"].meta["glaucoma"] is None
    assert by_id["refuge/T0001_disc"].image.dtype == np.uint16 and by_id["refuge/T0001_cup"].bbox is None
    flagged = [i.reason for i in report.flagged]
    assert any("snapped" in f for f in flagged) and any("empty optic cup" in f for f in flagged)
    assert any("T0002" in i.item and "truncated" in i.reason for i in report.skipped)


def test_refuge2_style_layout(tmp_path, fx, rng):
    root = tmp_path / "data"
    for split, stem in (("train", "a1"), ("val", "b1"), ("test", "c1")):
        fx.write(root / "REFUGE2" / split / "images" / f"{stem}.jpg", fx.rgb(rng, 24, 24))
        fx.write(root / "REFUGE2" / split / "mask" / f"{stem}.png", _label_map(24, 24, 12, 12, 8, 3))
    fx.write(root / "extra" / "images" / "z1.jpg", fx.rgb(rng, 24, 24))  # no split in its path: seeded
    fx.write(root / "extra" / "mask" / "z1.png", _label_map(24, 24, 12, 12, 8, 3))
    recs, report = load_source("refuge", str(root), fractions="0/0/1")
    assert {r.image_id: r.split for r in recs if r.image_id.endswith("_disc")} == {
        "refuge/a1_disc": "train", "refuge/b1_disc": "validation", "refuge/c1_disc": "test", "refuge/z1_disc": "test"}
    assert not report.issues


def _pannuke_fold(root, k, n, rng, *, masks_dtype=np.float64):
    imgs = rng.integers(0, 256, (n, 16, 16, 3)).astype(np.float64)
    masks = np.zeros((n, 16, 16, 6), masks_dtype)
    masks[..., 5] = 1
    masks[0, 2:5, 2:5, 0] = 7  # a neoplastic nucleus (instance 7)
    masks[0, 10:12, 10:14, 1] = 3  # an inflammatory one
    masks[0, 12:14, 1:3, 1] = 4  # a second inflammatory instance
    if n > 1:
        masks[1, 6:8, 6:8, 4] = 1
    base = root / f"Fold {k}"
    (base / "images" / f"fold{k}").mkdir(parents=True)
    (base / "masks" / f"fold{k}").mkdir(parents=True)
    np.save(base / "images" / f"fold{k}" / "images.npy", imgs)
    np.save(base / "images" / f"fold{k}" / "types.npy", np.array(["Breast", "Colon", "Lung"][:n]))
    np.save(base / "masks" / f"fold{k}" / "masks.npy", masks)
    return imgs, masks


def test_pannuke_folds_channels_and_corrupt_fold(tmp_path, rng):
    root = tmp_path / "pannuke"
    imgs1, masks1 = _pannuke_fold(root, 1, 3, rng)
    _pannuke_fold(root, 2, 2, rng)
    imgs3, _ = _pannuke_fold(root, 3, 2, rng)
    bad = np.load(root / "Fold 3/images/fold3/images.npy")
    bad[1, 0, 0, 0] = 3.5  # not an integer: skipped
    np.save(root / "Fold 3/images/fold3/images.npy", bad)
    _pannuke_fold(root, 4, 1, rng)
    data = (root / "Fold 4/masks/fold4/masks.npy").read_bytes()
    (root / "Fold 4/masks/fold4/masks.npy").write_bytes(data[: len(data) // 2])  # truncated
    recs, report = load_source("pannuke", str(root), folds="1:train,2:validation,3:test,4:test")
    by_id = {r.image_id: r for r in recs}
    assert set(by_id) == {"pannuke/fold1_00000", "pannuke/fold1_00001", "pannuke/fold1_00002",
                          "pannuke/fold2_00000", "pannuke/fold2_00001", "pannuke/fold3_00000"}
    r0 = by_id["pannuke/fold1_00000"]
    r0.validate()
    assert r0.image.dtype == np.uint8 and np.array_equal(r0.image, imgs1[0].astype(np.uint8))
    assert np.array_equal(r0.mask, masks1[0, ..., :5].max(-1) > 0)  # background channel 5 ignored
    assert r0.meta["nuclei"] == {"neoplastic": 1, "inflammatory": 2, "connective": 0, "dead": 0, "epithelial": 0}
    assert r0.meta["tissue"] == "Breast" and r0.split == "train"
    assert by_id["pannuke/fold2_00000"].split == "validation" and by_id["pannuke/fold3_00000"].split == "test"
    assert by_id["pannuke/fold1_00002"].bbox is None
    skipped = {i.item: i.reason for i in report.skipped}
    assert "not integers" in skipped["fold3_00001"] and "unreadable .npy" in skipped["fold 4"]
    # an object-dtype types.npy would need unpickling: flagged, images still loaded
    np.save(root / "Fold 2/images/fold2/types.npy", np.array(["a", None], dtype=object), allow_pickle=True)
    recs, report = load_source("pannuke", str(root), folds="1:train,2:validation,3:test,4:test")
    assert sum(r.meta["fold"] == 2 for r in recs) == 2 and all(r.meta["tissue"] is None for r in recs if r.meta["fold"] == 2)
    assert any("pickle" in i.reason for i in report.flagged)
    # default protocol: fold 4 is not mapped -> reported, not silently dropped
    _, report = load_source("pannuke", str(root))
    assert "not in folds" in {i.item: i.reason for i in report.skipped}["fold 4"]
    with pytest.raises(ValueError, match="unknown split"):
        load_source("pannuke", str(root), folds="1:training")


def _nifti(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1.0]) if affine is None else affine), path)


def test_ct_nifti_msd_layout_window_and_slices(tmp_path, rng):
    task = tmp_path / "Task03_Liver"
    vols = {}
    for c in range(4):
        hu = rng.integers(-1024, 1500, (24, 20, 6)).astype(np.int16)  # x, y, z
        lab = np.zeros((24, 20, 6), np.uint8)
        lab[3:10, 4:12, 2:4] = 1
        lab[12:15, 12:15, 3] = 2
        vols[f"liver_{c}"] = (hu, lab)
        _nifti(task / "imagesTr" / f"liver_{c}.nii.gz", hu)
        _nifti(task / "labelsTr" / f"liver_{c}.nii.gz", lab)
    (task / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "liver", "2": "cancer"}}))
    (task / "imagesTs").mkdir()
    _nifti(task / "imagesTr" / "liver_9.nii.gz", np.zeros((4, 4, 2), np.int16))
    _nifti(task / "labelsTr" / "liver_9.nii.gz", np.ones((4, 4, 3), np.uint8))  # shape mismatch
    _nifti(task / "imagesTr" / "liver_8.nii.gz", np.zeros((4, 4, 2), np.int16))  # no label file
    _nifti(task / "imagesTr" / "liver_7.nii.gz", np.zeros((4, 4, 2), np.int16))
    _nifti(task / "labelsTr" / "liver_7.nii.gz", np.zeros((4, 4, 2), np.uint8))  # label absent
    (task / "imagesTr" / "liver_6.nii.gz").write_bytes(b"\x1f\x8b corrupt")
    _nifti(task / "labelsTr" / "liver_6.nii.gz", np.ones((4, 4, 2), np.uint8))

    recs, report = load_source("ct_nifti", str(tmp_path), window="liver")
    assert {r.image_id for r in recs} == {f"ct_nifti/liver_{c}_z{z:03d}" for c in range(4) for z in (2, 3)}
    r = next(r for r in recs if r.image_id == "ct_nifti/liver_1_z003")
    r.validate()
    hu, lab = vols["liver_1"]
    # radiological view of the RAS volume: rows = -y, columns = -x
    expected = apply_window(hu[:, :, 3].T[::-1, ::-1], 60, 150)
    assert r.image.dtype == np.uint8 and np.array_equal(r.image, expected)
    assert np.array_equal(r.mask, (lab[:, :, 3] == 1).T[::-1, ::-1])
    assert r.meta["window"] == {"name": "liver", "level": 60.0, "width": 150.0, "unit": "HU"}
    assert r.meta["label_name"] == "liver" and r.meta["spacing_mm"] == pytest.approx([0.8, 0.8, 2.5])
    assert len({r.split for r in recs if r.meta["case"] == "liver_2"}) == 1  # a volume stays in one split
    skipped = {i.item.split("/")[-1]: i.reason for i in report.skipped}
    assert "same 3-D shape" in skipped["liver_9.nii.gz"]
    assert "no label volume" in skipped["liver_8.nii.gz"]
    assert "no slice contains label 1" in skipped["liver_7.nii.gz"]
    assert "unreadable NIfTI" in skipped["liver_6.nii.gz"]
    assert any("imagesTs" in i.item for i in report.flagged)
    # target label 2, custom window
    recs2, _ = load_source("ct_nifti", str(tmp_path), label="2", window="40/400")
    assert {r.meta["slice"] for r in recs2} == {3} and recs2[0].meta["window"]["name"] == "custom"
    assert {r.split for r in load_source("ct_nifti", str(tmp_path), fractions="1/0/0")[0]} == {"train"}
    with pytest.raises(ValueError, match="window="):
        load_source("ct_nifti", str(tmp_path), window="soft")


def test_ct_nifti_flare_layout_and_orientation(tmp_path, rng):
    hu = rng.integers(-200, 200, (10, 12, 3)).astype(np.int16)
    lab = np.zeros((10, 12, 3), np.uint8)
    lab[1:3, 2:9, 1] = 1
    # stored LPS-like (x and y flipped): canonical reorientation must undo it
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    _nifti(tmp_path / "images" / "FLARE22_Tr_0001_0000.nii.gz", hu[::-1, ::-1].copy(), flip)
    _nifti(tmp_path / "labels" / "FLARE22_Tr_0001.nii.gz", lab[::-1, ::-1].copy(), flip)
    recs, report = load_source("ct_nifti", str(tmp_path))
    assert [r.image_id for r in recs] == ["ct_nifti/FLARE22_Tr_0001_z001"] and not report.issues
    assert np.array_equal(recs[0].image, apply_window(hu[:, :, 1].T[::-1, ::-1], 40, 400))
    assert np.array_equal(recs[0].mask, (lab[:, :, 1] == 1).T[::-1, ::-1])


def test_apply_window_reference():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    assert apply_window(hu, 40, 400).tolist() == [0, 0, 128, 255, 255]  # (40+160)/400*255 = 127.5 -> 128
