"""OmniMedVQA, ROCO / ROCOv2 and MeCoVQA-G adapters on fixtures with their published file layouts."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medfm_hf.sources import load_source


def _qa(qid, path, modality, answer="Yes", options=("No", "Yes"), **extra):
    item = {"question_id": qid, "question": "Is there a lesion?", "gt_answer": answer, "image_path": path,
            "modality_type": modality, "question_type": "Disease Diagnosis", "dataset": "Demo"}
    item.update({f"option_{'ABCD'[i]}": o for i, o in enumerate(options)})
    item.update(extra)
    return item


@pytest.fixture
def omni(tmp_path, fx, rng):
    root = tmp_path / "OmniMedVQA"
    fx.write(root / "Images/ACRIMA/Im001.png", fx.rgb(rng, 30, 30))
    fx.write(root / "Images/ChestCT/ct1.png", fx.grey(rng, 30, 30, dtype=np.uint16))  # 16-bit
    fx.write(root / "Images/Brain/mr1.png", np.repeat(fx.grey(rng, 30, 30)[..., None], 3, axis=2))
    fx.truncate(fx.write(root / "Images/Brain/mr2.jpg", fx.rgb(rng, 30, 30)))
    fx.write(root / "Images/IR/ir1.png", fx.grey(rng, 30, 30))
    qa = root / "QA_information/Open-access"
    qa.mkdir(parents=True)
    (qa / "ACRIMA.json").write_text(json.dumps([
        _qa("acrima_1", "${dataset_root_path}/Images/ACRIMA/Im001.png", "Fundus Photography",
            answer="glaucoma", options=("normal", "Glaucoma", "cataract", "AMD")),
        _qa("acrima_2", "Images/ACRIMA/Im001.png", "Fundus Photography", answer="none of these"),
    ]))
    (qa / "Chest CT Scan.json").write_text(json.dumps([
        _qa("ct_1", "Images/ChestCT/ct1.png", "CT(Computed Tomography)", answer="No"),
    ]))
    (qa / "Brain.json").write_text(json.dumps([
        _qa("mr_1", "Images/Brain/mr1.png", "MR (Mag-netic Resonance Imaging)", answer="Yes",
            options=("No", "Yes", "Maybe")),
        _qa("mr_2", "Images/Brain/mr2.jpg", "MR (Mag-netic Resonance Imaging)"),
        _qa("mr_3", "Images/Brain/missing.png", "MR (Mag-netic Resonance Imaging)"),
    ]))
    (qa / "IR.json").write_text(json.dumps([_qa("ir_1", "Images/IR/ir1.png", "Infrared Reflectance Imaging")]))
    (qa / "Broken.json").write_text("[{")
    return tmp_path


def test_omnimedvqa_unmapped_modality_is_an_error_listing_names(omni):
    with pytest.raises(ValueError, match=r"no mapping: \['Infrared Reflectance Imaging'\]"):
        load_source("omnimedvqa", str(omni))


def test_omnimedvqa_records_letters_and_report(omni):
    recs, report = load_source("omnimedvqa", str(omni), unmapped="skip")
    by_id = {r.image_id: r for r in recs}
    assert set(by_id) == {"omnimedvqa/acrima_1", "omnimedvqa/ct_1", "omnimedvqa/mr_1"}
    for r in recs:
        r.validate()
        assert r.task == "vqa"
    a = by_id["omnimedvqa/acrima_1"]
    assert a.modality == "fundus" and a.options == ["normal", "Glaucoma", "cataract", "AMD"] and a.answer == "B"
    assert by_id["omnimedvqa/ct_1"].modality == "ct" and by_id["omnimedvqa/ct_1"].answer == "A"
    assert by_id["omnimedvqa/ct_1"].image.dtype == np.uint16
    mr = by_id["omnimedvqa/mr_1"]
    assert mr.modality == "mri" and mr.answer == "B" and mr.image.ndim == 2 and len(mr.options) == 3
    skipped = {i.item: i.reason for i in report.skipped}
    assert "matches none" in skipped["acrima_2"]
    assert "truncated" in skipped["mr_2"] and "cannot open" in skipped["mr_3"]
    assert "no mapping" in skipped["IR.json[0]"]
    assert "unreadable JSON" in skipped["QA_information/Open-access/Broken.json"]
    assert by_id["omnimedvqa/acrima_1"].meta["image_file"] == "Images/ACRIMA/Im001.png"
    recs, _ = load_source("omnimedvqa", str(omni), unmapped="skip", fractions="0/1/0")
    assert {r.split for r in recs} == {"validation"}
    with pytest.raises(ValueError, match="unmapped="):
        load_source("omnimedvqa", str(omni), unmapped="ignore")


def test_omnimedvqa_user_modality_map(omni):
    recs, _ = load_source("omnimedvqa", str(omni), modality_map="Infrared Reflectance Imaging=fundus")
    ir = next(r for r in recs if r.image_id == "omnimedvqa/ir_1")
    assert ir.modality == "fundus" and ir.image.shape == (30, 30, 3)
    with pytest.raises(ValueError, match="unknown modality 'infrared'"):
        load_source("omnimedvqa", str(omni), modality_map="Infrared Reflectance Imaging=infrared")


def _png_bytes(arr):
    a = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    return cv2.imencode(".png", a)[1].tobytes()


def test_roco_parquet_release(tmp_path, fx, rng):
    data = tmp_path / "ROCOv2-radiology" / "data"
    data.mkdir(parents=True)
    deep = fx.grey(rng, 20, 24, dtype=np.uint16)
    rows = [
        {"image": {"bytes": _png_bytes(fx.grey(rng, 20, 24)), "path": "a.png"}, "image_id": "ROCOv2_2023_test_000001",
         "caption": "Axial CT of the abdomen showing a mass.", "cui": ["C0040405"]},
        {"image": {"bytes": _png_bytes(deep), "path": "b.png"}, "image_id": "ROCOv2_2023_test_000002",
         "caption": "Chest radiograph with a nodule.", "cui": []},
        {"image": {"bytes": b"\x89PNG broken", "path": "c.png"}, "image_id": "ROCOv2_2023_test_000003",
         "caption": "MRI of the knee.", "cui": []},
        {"image": {"bytes": _png_bytes(fx.grey(rng, 20, 24)), "path": "d.png"}, "image_id": "ROCOv2_2023_test_000004",
         "caption": "Image of the lesion (arrow).", "cui": []},
        {"image": {"bytes": _png_bytes(fx.grey(rng, 20, 24)), "path": "e.png"}, "image_id": "ROCOv2_2023_test_000005",
         "caption": "CT and MRI comparison.", "cui": ["C0024485"]},
    ]
    pq.write_table(pa.Table.from_pylist(rows), data / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:1]), data / "train-00000-of-00001.parquet")
    (data / "validation-00000-of-00001.parquet").write_bytes(b"PAR1 not really")
    recs, report = load_source("roco", str(tmp_path))
    by_id = {r.image_id.split("/")[1]: r for r in recs}
    assert set(by_id) == {"ROCOv2_2023_test_000001", "ROCOv2_2023_test_000002", "ROCOv2_2023_test_000005"}
    for r in recs:
        r.validate()
        assert r.task == "caption" and r.split == "test"
    assert by_id["ROCOv2_2023_test_000001"].modality == "ct" and by_id["ROCOv2_2023_test_000001"].meta["modality_from"] == "cui"
    b = by_id["ROCOv2_2023_test_000002"]
    assert b.modality == "xray" and b.meta["modality_from"] == "caption" and np.array_equal(b.image, deep)
    assert by_id["ROCOv2_2023_test_000005"].modality == "mri"  # CUI wins over an ambiguous caption
    skipped = {i.item: i.reason for i in report.skipped}
    assert "not determinable" in skipped["ROCOv2_2023_test_000004"]
    assert "not a readable image" in skipped["ROCOv2_2023_test_000003"]
    assert "duplicate image id" in skipped["ROCOv2_2023_test_000001"]  # also in the train file
    assert "unreadable parquet" in skipped["ROCOv2-radiology/data/validation-00000-of-00001.parquet"]
    # user fallback modality
    recs, _ = load_source("roco", str(tmp_path), modality="xray")
    assert {r.image_id.split("/")[1]: r.modality for r in recs}["ROCOv2_2023_test_000004"] == "xray"


def test_roco_v2_csv_layout(tmp_path, fx, rng):
    root = tmp_path / "rocov2"
    for split, n in (("train", 3), ("valid", 1), ("test", 1)):
        caps = ["ID,Caption"]
        concepts = ["ID,CUIs"]
        for i in range(n):
            key = f"ROCOv2_2023_{split}_{i:06d}"
            fx.write(root / split / f"{key}.jpg", fx.grey(rng, 20, 20))  # grey JPEG
            caps.append(f'{key},"Ultrasound image, case {i}."')
            concepts.append(f"{key},C0041618;C0000000")
        (root / f"{split}_captions.csv").write_text("\n".join(caps) + "\n")
        (root / f"{split}_concepts.csv").write_text("\n".join(concepts) + "\n")
    with open(root / "train_captions.csv", "a") as fh:
        fh.write("ROCOv2_2023_train_999999,Missing image.\n")
    recs, report = load_source("roco", str(root))
    assert {(r.image_id.split("_")[2], r.split) for r in recs} == {("train", "train"), ("valid", "validation"),
                                                                     ("test", "test")}
    assert len(recs) == 5 and all(r.modality == "ultrasound" and r.meta["cuis"][0] == "C0041618" for r in recs)
    assert all(r.image.ndim == 2 for r in recs)  # grey stays grey for ultrasound
    assert "no image file" in {i.item: i.reason for i in report.skipped}["ROCOv2_2023_train_999999"]
    # a captions file naming no split gets the seeded draw (fractions honoured)
    (root / "captions.csv").write_text("ID,Caption\nROCOv2_2023_test_000000,Ultrasound of the liver.\n")
    for f in root.glob("*_c*.csv"):
        f.unlink()
    recs, _ = load_source("roco", str(root), fractions="0/0/1")
    assert [(r.image_id, r.split) for r in recs] == [("roco/ROCOv2_2023_test_000000", "test")]


def test_roco_v1_txt_layout(tmp_path, fx, rng):
    base = tmp_path / "data" / "test" / "radiology"
    fx.write(base / "images" / "ROCO_00002.jpg", fx.rgb(rng, 20, 20))
    fx.write(base / "images" / "ROCO_00003.jpg", fx.rgb(rng, 20, 20))
    (base / "captions.txt").write_text("ROCO_00002\t Angiogram of the left coronary artery.\nROCO_00003\t A figure.\n")
    (base / "cuis.txt").write_text("ROCO_00003\tC1306645\tPlain x-ray\n")
    recs, report = load_source("roco", str(tmp_path))
    mods = {r.image_id: (r.modality, r.split) for r in recs}
    assert mods == {"roco/ROCO_00002": ("angiography", "test"), "roco/ROCO_00003": ("xray", "test")}
    assert not report.issues


def test_mecovqa_units_modalities_and_report(tmp_path, fx, rng):
    root = tmp_path / "MeCoVQA"
    imgs = root / "SAMed2Dv1" / "images"
    fx.write(imgs / "ct_00--AbdomenCT1K--Case_00001--z_0050.png", fx.grey(rng, 40, 50))
    fx.write(imgs / "mr_t1--BraTS--x_0001.png", fx.grey(rng, 40, 50, dtype=np.uint16))
    fx.write(imgs / "x_ray--COVID--0001.png", fx.grey(rng, 40, 50))
    fx.write(imgs / "pet_00--AutoPET--0001.png", fx.grey(rng, 40, 50))
    fx.truncate(fx.write(imgs / "endoscopy--Kvasir--0001.jpg", fx.rgb(rng, 40, 50)))

    def item(i, image, answer, **kw):
        return {"id": f"q{i}", "image": f"SAMed2Dv1/images/{image}",
                "conversations": [{"from": "human", "value": "<image>\nPlease locate the liver in this image."},
                                  {"from": "gpt", "value": answer}], **kw}

    test = [
        item(1, "ct_00--AbdomenCT1K--Case_00001--z_0050.png", "The liver is at [0.1, 0.25, 0.5, 0.75]."),
        item(2, "mr_t1--BraTS--x_0001.png", "[5, 4, 30, 20]"),
        item(3, "x_ray--COVID--0001.png", "no box here"),
        item(4, "x_ray--COVID--0001.png", "[10, 10, 80, 20]"),  # outside a 50-wide image
        item(5, "pet_00--AutoPET--0001.png", "[0.1, 0.1, 0.2, 0.2]"),
        item(6, "endoscopy--Kvasir--0001.jpg", "[0.1, 0.1, 0.2, 0.2]"),
        item(7, "x_ray--COVID--0001.png", "", bbox=[2, 3, 12, 13], question="Where is the nodule?"),
    ]
    train = [item(10 + i, "x_ray--COVID--0001.png", "[0.2, 0.2, 0.4, 0.4]") for i in range(3)]
    (root / "MeCoVQA_Grounding_test.json").write_text(json.dumps(test))
    (root / "MeCoVQA_Grounding_train.json").write_text(json.dumps(train))
    (root / "unrelated.json").write_text("{}")
    recs, report = load_source("mecovqa", str(root))
    by_id = {r.image_id: r for r in recs}
    for r in recs:
        r.validate()
        assert r.task == "grounding"
    ct = by_id["mecovqa/q1"]
    assert ct.modality == "ct" and ct.target_bbox == pytest.approx([5.0, 10.0, 25.0, 30.0])  # normalised -> px
    assert ct.question == "Please locate the liver in this image." and ct.meta["box_units"] == "normalized"
    mr = by_id["mecovqa/q2"]
    assert mr.modality == "mri" and mr.target_bbox == [5.0, 4.0, 30.0, 20.0] and mr.image.dtype == np.uint16
    q7 = by_id["mecovqa/q7"]
    assert q7.target_bbox == [2.0, 3.0, 12.0, 13.0] and q7.question == "Where is the nodule?" and q7.modality == "xray"
    assert ct.split == "test" and {by_id[f"mecovqa/q{10 + i}"].split for i in range(3)} == {"test"}  # same image
    assert [i.item for i in report.flagged] == ["SAMed2Dv1/images/x_ray--COVID--0001.png"]
    assert "both the test and train files" in report.flagged[0].reason
    skipped = {i.item: i.reason for i in report.skipped}
    assert "no target box" in skipped["q3"] and "outside the 50x40 image" in skipped["q4"]
    assert "'pet_00' is not mapped" in skipped["q5"] and "truncated" in skipped["q6"]
    # options: explicit units and a fallback modality
    recs, report = load_source("mecovqa", str(root), box_units="pixels", modality="ct")
    by_id = {r.image_id: r for r in recs}
    assert by_id["mecovqa/q5"].modality == "ct"
    assert by_id["mecovqa/q1"].target_bbox == pytest.approx([0.1, 0.25, 0.5, 0.75])  # taken as pixels
    # images=SUBDIR: image paths relative to a sub-folder; fractions for files naming no split
    (root / "MeCoVQA_Grounding_test.json").rename(root / "grounding_all.json")
    (root / "MeCoVQA_Grounding_train.json").unlink()
    rel = json.loads((root / "grounding_all.json").read_text())
    for it in rel:
        it["image"] = it["image"].removeprefix("SAMed2Dv1/")
    (root / "grounding_all.json").write_text(json.dumps(rel))
    recs, _ = load_source("mecovqa", str(root), images="SAMed2Dv1", fractions="0/0/1")
    assert {r.image_id for r in recs} == {"mecovqa/q1", "mecovqa/q2", "mecovqa/q7"} and {r.split for r in recs} == {"test"}
    with pytest.raises(ValueError, match="box_units"):
        load_source("mecovqa", str(root), box_units="percent")
