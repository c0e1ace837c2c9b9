"""``medfm-robust build --sources NAME=PATH,...`` runs every adapter end to end on tiny fixtures."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medfm_hf.cli import main
from medfm_hf.records import read_records_parquet

S = 32


def _layouts(tmp, fx, rng) -> str:
    """One minimal public-layout folder per adapter; returns the ``--sources`` argument."""
    m = fx.rect(S, S, 4, 20, 6, 24)
    isic = tmp / "isic"
    for split, ids in (("Training", range(4)), ("Test", range(10, 14))):
        for i in ids:
            fx.write(isic / f"ISBI2016_ISIC_Part1_{split}_Data" / f"ISIC_{i:07d}.jpg", fx.rgb(rng, S, S))
            fx.write(isic / f"ISBI2016_ISIC_Part1_{split}_GroundTruth" / f"ISIC_{i:07d}_Segmentation.png", m)
    busi = tmp / "busi" / "Dataset_BUSI_with_GT"
    for i in range(1, 6):
        fx.write(busi / "benign" / f"benign ({i}).png", fx.grey(rng, S, S))
        fx.write(busi / "benign" / f"benign ({i})_mask.png", m)
    kv = tmp / "kvasir" / "Kvasir-SEG"
    for i in range(5):
        fx.write(kv / "images" / f"p{i}.jpg", fx.rgb(rng, S, S))
        fx.write(kv / "masks" / f"p{i}.jpg", m, quality=80)
    mri = tmp / "mri"
    for n in range(1, 6):
        mri.mkdir(exist_ok=True)
        with h5py.File(mri / f"{n}.mat", "w") as f:
            g = f.create_group("cjdata")
            g["image"] = rng.integers(0, 900, (S, S)).astype(np.int16).T
            g["tumorMask"] = m.astype(np.uint8).T
            g["label"] = np.array([[2.0]])
            g["PID"] = np.array([[ord(c)] for c in f"p{n}"], np.uint16)
    ref = tmp / "refuge"
    lab = np.full((S, S), 255, np.uint8)
    lab[6:26, 6:26] = 128
    lab[12:20, 12:20] = 0
    for split, stem in (("Training400", "g0001"), ("REFUGE-Validation400", "V0001"), ("REFUGE-Test400", "T0001")):
        fx.write(ref / split / f"{stem}.jpg", fx.rgb(rng, S, S))
        fx.write(ref / f"{split}-GT" / "Disc_Cup_Masks" / f"{stem}.bmp", lab)
    pn = tmp / "pannuke"
    for k in (1, 2, 3):
        (pn / f"Fold {k}/images/fold{k}").mkdir(parents=True)
        (pn / f"Fold {k}/masks/fold{k}").mkdir(parents=True)
        np.save(pn / f"Fold {k}/images/fold{k}/images.npy", rng.integers(0, 256, (2, S, S, 3)).astype(np.float64))
        masks = np.zeros((2, S, S, 6))
        masks[:, 5:15, 5:15, 0] = 1
        np.save(pn / f"Fold {k}/masks/fold{k}/masks.npy", masks)
    ct = tmp / "ct" / "Task03_Liver"
    for c in range(4):
        (ct / "imagesTr").mkdir(parents=True, exist_ok=True)
        (ct / "labelsTr").mkdir(parents=True, exist_ok=True)
        labv = np.zeros((S, S, 3), np.uint8)
        labv[5:20, 5:20, 1] = 1
        nib.save(nib.Nifti1Image(rng.integers(-200, 300, (S, S, 3)).astype(np.int16), np.eye(4)),
                 ct / "imagesTr" / f"liver_{c}.nii.gz")
        nib.save(nib.Nifti1Image(labv, np.eye(4)), ct / "labelsTr" / f"liver_{c}.nii.gz")
    om = tmp / "omni"
    items = []
    for i in range(5):
        fx.write(om / "Images" / "X" / f"{i}.png", fx.grey(rng, S, S))
        items.append({"question_id": f"x{i}", "question": "Which modality?", "option_A": "CT", "option_B": "X-ray",
                      "gt_answer": "X-ray", "image_path": f"Images/X/{i}.png", "modality_type": "X-Ray"})
    (om / "QA_information" / "Open-access").mkdir(parents=True)
    (om / "QA_information" / "Open-access" / "X.json").write_text(json.dumps(items))
    rc = tmp / "roco" / "data"
    rc.mkdir(parents=True)
    import cv2

    rows = [{"image": {"bytes": cv2.imencode(".png", fx.grey(rng, S, S))[1].tobytes(), "path": None},
             "image_id": f"r{i}", "caption": "Axial CT of the chest."} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), rc / "test-00000-of-00001.parquet")
    me = tmp / "meco"
    fx.write(me / "imgs" / "ct_00--A--1.png", fx.grey(rng, S, S))
    (me / "MeCoVQA_Grounding_test.json").write_text(json.dumps([
        {"id": "m1", "image": "imgs/ct_00--A--1.png",
         "conversations": [{"from": "human", "value": "<image>\nWhere is the liver?"},
                           {"from": "gpt", "value": "[0.25, 0.25, 0.75, 0.5]"}]}]))
    fo = tmp / "folder"
    for i in range(4):
        fx.write(fo / "images" / f"f{i}.png", fx.grey(rng, S, S, dtype=np.uint16))
        fx.write(fo / "masks" / f"f{i}.png", m)
    return ",".join([f"isic2016={isic}", f"busi={tmp / 'busi'}", f"kvasir={tmp / 'kvasir'}", f"brain_tumor_mri={mri}",
                     f"refuge={ref}", f"pannuke={pn}", f"ct_nifti={tmp / 'ct'}:window=lung", f"omnimedvqa={om}",
                     f"roco={tmp / 'roco'}", f"mecovqa={me}", f"folder={fo}:angiography"])


@pytest.mark.slow
def test_build_runs_every_adapter_and_keeps_splits(tmp_path, fx, rng, capsys):
    sources = _layouts(tmp_path / "raw", fx, rng)
    out = tmp_path / "bench"
    args = ["build", "--sources", sources, "--out", str(out), "--perturbations", "brightness", "--levels", "1",
            "--no-progress"]
    assert main(args) == 0
    recs = [r for split in ("train", "validation", "test")
            for p in sorted((out / "data" / "clean").glob(f"{split}-*.parquet")) for r in read_records_parquet(str(p))]
    by_source: dict[str, list] = {}
    for r in recs:
        by_source.setdefault(r.source, []).append(r)
    assert set(by_source) == {"isic2016", "busi", "kvasir", "brain_tumor_mri", "refuge", "pannuke", "ct_nifti",
                              "omnimedvqa", "roco", "mecovqa", "folder"}
    assert {r.task for r in by_source["omnimedvqa"]} == {"vqa"} and by_source["roco"][0].task == "caption"
    assert by_source["mecovqa"][0].target_bbox == pytest.approx([8.0, 8.0, 24.0, 16.0])
    assert by_source["folder"][0].image.dtype == np.uint16 and by_source["folder"][0].modality == "angiography"
    assert by_source["ct_nifti"][0].meta["window"]["name"] == "lung"
    split_files = sorted(p.stem for p in (out / "splits").glob("*.json"))
    assert split_files == sorted(by_source)
    before = {p.name: p.read_bytes() for p in (out / "splits").glob("*.json")}
    # a rebuild with the same settings reuses the recorded splits byte for byte
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in (out / "splits").glob("*.json")} == before
    capsys.readouterr()
