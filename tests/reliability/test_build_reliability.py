"""Build reliability: keyed by what it reads, safe overwrite, bad inputs as data, verify (reliability probe)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import cv2
import numpy as np
import pytest

from medfm_hf.benchmark import layout
from medfm_hf.benchmark.build import BuildError, build_benchmark
from medfm_hf.cli import main

from .conftest import PERTS, build, make_image, settings, tree_hashes, write_folder


def _data(out) -> dict[str, str]:
    return {k: v for k, v in tree_hashes(out).items() if k.startswith("data")}


# ---- B1: --overwrite never deletes what a build did not write ---------------------------------------------


def test_overwrite_into_foreign_folder_is_refused_and_nothing_deleted(src, tmp_path):
    out = tmp_path / "proj"
    (out / "data").mkdir(parents=True)
    (out / "data" / "important.csv").write_text("keep me")
    (out / "code").mkdir()
    (out / "code" / "main.py").write_text("print(1)")
    with pytest.raises(BuildError, match="holds no medfm_hf build.*nothing was changed"):
        build(src, out, overwrite=True)
    assert (out / "data" / "important.csv").read_text() == "keep me"
    assert (out / "code" / "main.py").exists()
    assert not (out / ".medfm").exists()


def test_overwrite_deletes_only_the_files_the_previous_build_listed(src, tmp_path):
    out = tmp_path / "b"
    build(src, out, perts=["gaussian_noise", "contrast"])
    (out / "data" / "my_notes.txt").write_text("mine")
    (out / "gallery" / "mine.png").write_bytes(b"x")
    build(src, out, perts=["contrast"], overwrite=True)
    assert (out / "data" / "my_notes.txt").read_text() == "mine"  # unknown files survive
    assert (out / "gallery" / "mine.png").exists()
    assert not (out / "data" / "gaussian_noise_l1").exists()  # the old build's configs are gone
    assert not (out / "gallery" / "gaussian_noise.png").exists()  # and its stale gallery strip
    assert sorted(json.loads((out / "manifest.json").read_text())["configs"]) == ["clean", "contrast_l1",
                                                                                  "contrast_l3"]


# ---- B2: an output folder that contains a source is refused ---------------------------------------------


def test_out_containing_the_source_is_refused_before_anything_happens(tmp_path):
    proj = tmp_path / "proj"
    src = write_folder(proj / "data")
    before = sorted(p.name for p in (src / "images").iterdir())
    rc = main(["build", "--sources", f"folder={src}:ultrasound", "--out", str(proj), "--overwrite",
               "--perturbations", "contrast", "--levels", "1", "--no-progress"])
    assert rc == 2
    assert sorted(p.name for p in (src / "images").iterdir()) == before
    assert not (proj / ".medfm").exists()


# ---- B3: a changed source rebuilds exactly the affected shards -------------------------------------------


def test_changed_input_rebuilds_affected_shards_and_matches_a_fresh_build(tmp_path):
    src = write_folder(tmp_path / "src")
    out = tmp_path / "b"
    first = build(src, out)
    assert sorted(first["built"]) == [f"folder/{p}" for p in sorted(PERTS)]
    cv2.imwrite(str(src / "images" / "im1.png"), 255 - make_image(1))  # one image changes
    second = build(src, out)
    assert sorted(second["rebuilt"]) == [f"folder/{p}" for p in sorted(PERTS)]
    fresh = tmp_path / "fresh"
    build(src, fresh)
    assert _data(out) == _data(fresh)  # never a mix of old and new
    state = json.loads((out / ".medfm" / "build.json").read_text())
    assert state["inputs"]["folder"]["images/im1.png"]["sha256"] != \
        json.loads((fresh / ".medfm" / "build.json").read_text())["inputs"]["folder"]["images/im0.png"]["sha256"]


def test_unchanged_inputs_resume_everything(built):
    out = built
    src = out.parent / "src"
    before = {p: os.path.getmtime(out / p) for p in _data(out)}
    again = build(src, out)
    assert again["rebuilt"] == [] and again["built"] == [] and again["resumed_shards"] == len(PERTS)
    assert {p: os.path.getmtime(out / p) for p in before if "clean" not in p} == \
        {p: m for p, m in before.items() if "clean" not in p}


def test_refuse_changed_names_the_changed_file(tmp_path):
    src = write_folder(tmp_path / "src")
    out = tmp_path / "b"
    build(src, out)
    cv2.imwrite(str(src / "images" / "im2.png"), 255 - make_image(2))
    with pytest.raises(BuildError, match=r"images/im2\.png \(changed\)"):
        build(src, out, refuse_changed=True)


def test_kill_after_an_input_change_resumes_to_the_fresh_result(tmp_path, monkeypatch):
    """An interrupted rebuild (after an input change) resumes to exactly what a fresh build gives."""
    import medfm_hf.benchmark.build as b

    src = write_folder(tmp_path / "src")
    out = tmp_path / "b"
    build(src, out, perts=["gaussian_noise", "contrast", "brightness"])
    cv2.imwrite(str(src / "images" / "im0.png"), 255 - make_image(0))
    real, calls = b._shard_job, []

    def dies_after_one(job):
        if calls:
            (out / "data" / "brightness_l1" / "test-folder.parquet.tmp-99999").write_bytes(b"partial")  # kill -9
            raise KeyboardInterrupt
        calls.append(job)
        return real(job)

    monkeypatch.setattr(b, "_shard_job", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        build(src, out, perts=["gaussian_noise", "contrast", "brightness"])
    monkeypatch.setattr(b, "_shard_job", real)
    resumed = build(src, out, perts=["gaussian_noise", "contrast", "brightness"])
    assert len(resumed["built"]) == 2 and resumed["resumed_shards"] == 1  # the one finished shard is kept
    fresh = tmp_path / "fresh"
    build(src, fresh, perts=["gaussian_noise", "contrast", "brightness"])
    assert _data(out) == _data(fresh)
    assert not list(out.rglob("*.tmp-*"))


# ---- ugly: a failed build never blocks its corrected rerun ----------------------------------------------


def test_argument_errors_write_nothing(src, tmp_path):
    out = tmp_path / "x"
    for bad in (dict(perts=["gausian_noise"]), dict(levels=[0])):
        with pytest.raises(BuildError):
            build(src, out, **bad)
    assert not out.exists()
    build(src, out)  # the corrected run just works
    assert (out / "manifest.json").exists()


def test_failed_build_does_not_block_the_corrected_rerun(src, tmp_path):
    out = tmp_path / "x"
    with pytest.raises(BuildError, match="no test images"):
        build(src, out, fractions="1/0/0")  # fails after loading the source
    state = json.loads((out / ".medfm" / "build.json").read_text())
    assert state["complete"] is False
    res = build(src, out, fractions="0/0/1")  # other settings, no --overwrite needed
    assert res["records"] == 4 and (out / "manifest.json").exists()


def test_changed_fractions_are_used_not_silently_ignored(src, tmp_path):
    out = tmp_path / "x"
    build(src, out, fractions="0.5/0/0.5")
    n_test = json.loads((out / "manifest.json").read_text())["files"]
    assert "data/clean/train-00000-of-00001.parquet" in n_test
    build(src, out, fractions="0/0/1", overwrite=True)
    files = json.loads((out / "manifest.json").read_text())["files"]
    assert "data/clean/train-00000-of-00001.parquet" not in files  # every image is now in test
    assert not (out / "data" / "clean" / "train-00000-of-00001.parquet").exists()
    split = json.loads((out / "splits" / "folder.json").read_text())["sources"]["folder"]
    assert split["fractions"] == [0.0, 0.0, 1.0] and set(split["assignments"].values()) == {"test"}


# ---- ugly: a constant or 1x1 image is skipped and reported, the build goes on ----------------------------


@pytest.mark.parametrize("bad_image, reason", [
    (np.full((64, 64), 77, np.uint8), "constant image"),
    (np.array([[9]], np.uint8), "too small"),
])
def test_unusable_image_is_skipped_with_its_path(tmp_path, bad_image, reason):
    src = write_folder(tmp_path / "src")
    cv2.imwrite(str(src / "images" / "bad.png"), bad_image)
    mask = np.zeros(bad_image.shape, np.uint8)
    mask[: max(1, bad_image.shape[0] // 2)] = 255
    cv2.imwrite(str(src / "masks" / "bad.png"), mask)
    res = build(src, tmp_path / "b")
    assert res["records"] == 4
    bad = json.loads((tmp_path / "b" / "bad_inputs.json").read_text())
    hit = [b for b in bad if b["path"] == "images/bad.png" and b["action"] == "skipped"]
    assert hit and reason in hit[0]["reason"]


# ---- ugly: --num-proc is capped; one-line errors ------------------------------------------------------------


def test_num_proc_is_capped_at_the_shards(src, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="medfm_hf.benchmark.build"):
        build(src, tmp_path / "b", perts=["contrast"], num_proc=999)
    assert "--num-proc 999 capped to 1" in caplog.text


@pytest.mark.parametrize("args, msg", [
    (["--levels", "abc"], "'abc' is not a level"),
    (["--levels=-1"], "not a level"),
    (["--num-proc", "0"], "--num-proc must be >= 1"),
    (["--max-size", "100000"], "--max-size must be an integer in 32-8192"),
])
def test_bad_build_arguments_are_one_line(tmp_path, capsys, args, msg):
    rc = main(["build", "--out", str(tmp_path / "x"), "--perturbations", "contrast", *args])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for out in (f, f / "sub"):
        assert main(["build", "--out", str(out), "--perturbations", "contrast"]) == 2
        err = capsys.readouterr().err
        assert "is a file" in err or "lies under the file" in err
        assert "Traceback" not in err


def test_disk_full_is_one_line_and_leaves_no_partial_file(src, tmp_path, monkeypatch, capsys):
    import contextlib

    import medfm_hf.io as mio

    real = mio.atomic_path

    @contextlib.contextmanager
    def full(path):
        with real(path) as tmp:
            yield tmp  # the writer fills the temporary file, then the disk is full
            raise OSError(28, "No space left on device", tmp)

    monkeypatch.setattr(mio, "atomic_path", full)
    rc = main(["build", "--sources", f"folder={src}:ultrasound:fractions=0/0/1", "--out", str(tmp_path / "b"),
               "--perturbations", "contrast", "--levels", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and "Traceback" not in err
    assert not list((tmp_path / "b").rglob("*.tmp-*"))


# ---- verify, corrupt shards, repair -------------------------------------------------------------------


def test_verify_passes_on_a_fresh_build(built, capsys):
    assert main(["verify", str(built)]) == 0
    assert "files match the manifest" in capsys.readouterr().out


def test_verify_names_a_flipped_byte_and_the_rebuild_repairs_it(tmp_path, capsys):
    src = write_folder(tmp_path / "src")
    out = tmp_path / "b"
    build(src, out)
    good = _data(out)
    shard = out / "data" / "contrast_l3" / "test-folder.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "data" / "contrast_l3" / "stray.parquet").write_bytes(b"")
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "data/contrast_l3/test-folder.parquet: content differs" in text
    assert "data/contrast_l3/stray.parquet: not in the manifest" in text
    os.remove(out / "data" / "contrast_l3" / "stray.parquet")
    res = build(src, out)
    assert res["built"] == ["folder/contrast"]  # exactly the corrupt shard is redone
    assert _data(out) == good
    assert main(["verify", str(out)]) == 0


def test_verify_reports_an_unfinished_build(tmp_path, capsys):
    src = write_folder(tmp_path / "src")
    out = tmp_path / "b"
    build(src, out)
    os.remove(out / "manifest.json")
    state = json.loads((out / ".medfm" / "build.json").read_text())
    (out / ".medfm" / "build.json").write_text(json.dumps(dict(state, complete=False)))
    assert main(["verify", str(out)]) == 1
    assert "did not finish" in capsys.readouterr().out


def test_manifest_records_inputs_settings_version_and_checksums(built):
    manifest = json.loads((built / "manifest.json").read_text())
    state = json.loads((built / ".medfm" / "build.json").read_text())
    from medfm_hf import __version__

    assert manifest["medfm_hf"] == __version__ and manifest["complete"] is True
    assert manifest["settings"]["levels"] == [1, 3]
    assert str(built.parent) not in json.dumps(manifest)  # no local paths in the public manifest
    entry = state["inputs"]["folder"]["images/im0.png"]
    assert set(entry) == {"size", "mtime_ns", "sha256"} and len(entry["sha256"]) == 64
    for rel, info in manifest["files"].items():
        assert os.path.getsize(layout.path(str(built), rel)) == info["size"]
    assert manifest["data_fingerprint"] == layout.data_fingerprint(manifest["files"])


def test_old_temporaries_are_cleaned_on_the_next_run(tmp_path):
    src = write_folder(tmp_path / "src")
    out = tmp_path / "b"
    build(src, out)
    junk = out / "data" / "clean" / "test-00000-of-00001.parquet.tmp-4242"
    junk.write_bytes(b"left by a kill -9")
    build(src, out)
    assert not junk.exists()


def test_python_api_validates_before_writing(tmp_path, src):
    s = settings(src)
    s.modalities = ["pet"]
    with pytest.raises(BuildError, match="unknown modalities"):
        build_benchmark(s, str(tmp_path / "o"), progress=False)
    assert not (tmp_path / "o").exists()
    shutil.rmtree(src)
    with pytest.raises(BuildError, match="does not exist"):
        build_benchmark(settings(src), str(tmp_path / "o"), progress=False)
