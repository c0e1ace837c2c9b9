"""The one evaluator on the VLM tasks: stub OpenAI-compatible server, resumption, sharding, summaries.

The stub answers deterministically from the image's pixel hash; the expected numbers are recomputed here
from the benchmark files without the evaluator's summary code (and CIDEr-D with pycocoevalcap).
"""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from medfm_hf.cli import main
from medfm_hf.evaluation.args import EvalArguments
from medfm_hf.evaluation.plan import EvaluationError
from medfm_hf.evaluation.runner import evaluate
from medfm_hf.vlm.base import image_sha256, to_pil_rgb
from medfm_hf.vlm.stubs import StubReply, StubServer, openai_body

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 6


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("vlmbench") / "medfm-robust"
    assert main(["build", "--sources", "demo", "--out", str(out), "--modalities", "ct,fundus",
                 "--perturbations", "gaussian_noise,translate", "--levels", "1,3", "--no-progress"]) == 0
    return str(out)


def _rows(bench: str, config: str) -> list[dict]:
    files = sorted(glob.glob(os.path.join(bench, "data", config, "test-*.parquet")))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: r["image_id"])


def _hash(png: bytes) -> str:
    arr = np.asarray(Image.open(io.BytesIO(png)))
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.float64) / 257.0).round().astype(np.uint8)
    return image_sha256(to_pil_rgb(arr))


def _h(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def _table(bench: str) -> dict[str, dict]:
    """image hash -> (config, row) of every row a run over the benchmark may ask about."""
    table = {}
    for cfg in ["clean", "gaussian_noise_l1", "gaussian_noise_l3", "translate_l1", "translate_l3"]:
        for r in _rows(bench, cfg):
            table[_hash(r["image"]["bytes"])] = {"config": cfg, **r}
    return table


def _plan_answer(task: str, row: dict, h: int) -> tuple[str, str]:
    """(what the stub says, what kind: ok / block / fail) for a row, from its image hash ``h``."""
    if h % 13 == 0:
        return "", "block"
    if h % 17 == 0:
        return "", "fail"
    if task == "vqa":
        if h % 5 == 0:
            return "I cannot tell from this image.", "ok"
        letters = "ABCD"
        ans = row["answer"] if h % 3 else letters[(letters.index(row["answer"]) + 1) % 4]
        return (f"The answer is {ans}." if h % 2 else ans), "ok"
    if task == "caption":
        return (row["caption"] if h % 3 else "An image of an organ."), "ok"
    w, hgt = Image.open(io.BytesIO(row["image"]["bytes"])).size
    if h % 5 == 0:
        return "I cannot locate it.", "ok"
    x0, y0, x1, y1 = row["target_bbox"]
    shift = (h % 4) * 4.0
    box = [(x0 + shift) / w, y0 / hgt, (x1 + shift) / w, y1 / hgt]
    return "[" + ", ".join(f"{v:.4f}" for v in box) + "]", "ok"


def _reply_fn(task: str, table: dict, hang_after: int | None = None, counter: list | None = None):
    def reply(req: dict) -> StubReply:
        content = req["messages"][-1]["content"]
        url = next(c["image_url"]["url"] for c in content if c.get("type") == "image_url")
        h_img = _hash(base64.b64decode(url.split(",", 1)[1]))
        row = table[h_img]
        if counter is not None:
            counter.append(h_img)
            if hang_after is not None and len(counter) == hang_after + 1:
                return StubReply(200, delay=20.0)
        text, kind = _plan_answer(task, row, _h(h_img))
        if kind == "block":
            return StubReply(200, body=openai_body("", finish_reason="content_filter"))
        if kind == "fail":
            return StubReply(400)
        return StubReply(200, body=openai_body(text))
    return reply


def _args(bench, out, task, url, **kw):
    base = dict(task=task, model="openai", checkpoint="stub-model", dataset=bench, output=str(out),
                model_kwargs=json.dumps({"base_url": url, "timeout": 20}), levels="1,3", batch_size=4, limit=LIMIT,
                no_progress=True)
    base.update(kw)
    return EvalArguments(**base)


def _independent(task: str, bench: str) -> pd.DataFrame:
    """Expected per-condition numbers from the benchmark files and the stub's rule alone."""
    from medfm_hf.metrics.captioning import python_tokenize

    clean = _rows(bench, "clean")
    ids = [r["image_id"] for r in clean][:LIMIT]
    per = {}
    for cfg in ["clean", "gaussian_noise_l1", "gaussian_noise_l3", "translate_l1", "translate_l3"]:
        recs = []
        for r in _rows(bench, cfg):
            if r["image_id"] not in ids or (task == "grounding" and r["target_bbox"] is None):
                continue
            text, kind = _plan_answer(task, r, _h(_hash(r["image"]["bytes"])))
            recs.append((r, text, kind))
        per[cfg] = recs
    out = []
    clean_score = {}
    for cfg, recs in per.items():
        if task == "vqa":
            scores = [float(kind == "ok" and text.rstrip(".").endswith(r["answer"])
                            and "cannot" not in text) for r, text, kind in recs]
            unparsable = [kind == "ok" and "cannot" in text for r, text, kind in recs]
        elif task == "grounding":
            scores = []
            for r, text, kind in recs:
                if kind != "ok" or "cannot" in text:
                    scores.append(0.0)
                    continue
                x0, y0, x1, y1 = r["target_bbox"]
                w, hgt = Image.open(io.BytesIO(r["image"]["bytes"])).size
                fr = [float(v) for v in text.strip("[]").split(",")]  # the printed fractions, read back
                px = [min(fr[0] * w, w), min(fr[1] * hgt, hgt), min(fr[2] * w, w), min(fr[3] * hgt, hgt)]
                iw = max(0.0, min(x1, px[2]) - max(x0, px[0]))
                ih = max(0.0, min(y1, px[3]) - max(y0, px[1]))
                inter = iw * ih
                union = (x1 - x0) * (y1 - y0) + (px[2] - px[0]) * (px[3] - px[1]) - inter
                scores.append(float(inter / union >= 0.5))
            unparsable = [kind == "ok" and "cannot" in text for r, text, kind in recs]
        else:
            from pycocoevalcap.cider.cider import Cider

            hyps = {i: [" ".join(python_tokenize(text)) if kind == "ok" else ""] for i, (r, text, kind) in
                    enumerate(recs)}
            refs = {i: [" ".join(python_tokenize(r["caption"]))] for i, (r, _, _) in enumerate(recs)}
            _, per_sample = Cider().compute_score(refs, hyps)
            scores = [float(s) if kind == "ok" else 0.0 for s, (_, _, kind) in zip(per_sample, recs)]
            unparsable = [False] * len(recs)
        failed = [kind != "ok" for _, _, kind in recs]
        name, level = ("clean", 0) if cfg == "clean" else (cfg.rsplit("_l", 1)[0], int(cfg.rsplit("_l", 1)[1]))
        if cfg == "clean":
            clean_score = {r["image_id"]: s for (r, _, _), s in zip(recs, scores)}
        paired = [clean_score[r["image_id"]] for r, _, _ in recs]
        out.append({"name": name, "level": level, "n": len(recs), "headline": float(np.mean(scores)),
                    "drop": float(np.mean(paired) - np.mean(scores)), "unparsable_rate": float(np.mean(unparsable)),
                    "failure_rate": float(np.mean(failed)),
                    "blocked_rate": float(np.mean([k == "block" for _, _, k in recs]))})
    return pd.DataFrame(out)


HEADLINE = {"vqa": "accuracy", "caption": "cider", "grounding": "acc@0.5"}


@pytest.mark.parametrize("task", ["vqa", "caption", "grounding"])
def test_stub_runs_match_an_independent_computation(bench, tmp_path, monkeypatch, task):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    table = _table(bench)
    with StubServer("openai", default=_reply_fn(task, table)) as srv:
        res = evaluate(_args(bench, tmp_path / task, task, srv.url))
        n_first = len(srv.requests)
        again = evaluate(_args(bench, tmp_path / task, task, srv.url))  # a rerun asks nothing
        assert len(srv.requests) == n_first
    df = res["results"]
    assert n_first == len(df)  # one request per sample, failures included
    assert not df.duplicated(["kind", "name", "level", "image_id"]).any()
    pd.testing.assert_frame_equal(df.drop(columns=["seconds"]), again["results"].drop(columns=["seconds"]))
    stats = res["stats"]
    on_disk = pd.read_csv(tmp_path / task / f"openai_{task}_STATS_BY_LEVEL.csv")
    np.testing.assert_allclose(on_disk[HEADLINE[task]], stats[HEADLINE[task]], rtol=1e-5)
    exp = _independent(task, bench)
    head = HEADLINE[task]
    got = stats.set_index(["name", "level"])
    for _, e in exp.iterrows():
        g = got.loc[(e["name"], e["level"])]
        assert int(g["n"]) == e["n"], (e["name"], e["level"])
        assert g[head] == pytest.approx(e["headline"], abs=1e-6), (e["name"], e["level"])
        assert g[f"{head}_drop"] == pytest.approx(e["drop"], abs=1e-6)
        assert g["unparsable_rate"] == pytest.approx(e["unparsable_rate"])
        assert g["failure_rate"] == pytest.approx(e["failure_rate"])
        assert g["blocked_rate"] == pytest.approx(e["blocked_rate"])
    assert exp["failure_rate"].sum() > 0 or exp["unparsable_rate"].sum() > 0  # the rule exercises both paths
    run = json.load(open(tmp_path / task / "run.json"))
    assert run["task"] == task and run["model"]["kind"] == "api" and run["dataset"]["fingerprint"]
    summary = pd.read_csv(tmp_path / task / f"openai_{task}_SUMMARY.csv")
    assert list(summary["name"])[0] == "Clean" and list(summary["name"])[-1] == "Avg"


def test_killed_run_resumes_without_repeating_calls(bench, tmp_path):
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-key", "PYTHONPATH": ROOT}
    table = _table(bench)
    seen: list[str] = []
    out = tmp_path / "killed"
    with StubServer("openai", default=_reply_fn("vqa", table, hang_after=9, counter=seen)) as srv:
        cmd = [sys.executable, os.path.join(ROOT, "evaluate.py"), "--task", "vqa", "--model", "openai",
               "--checkpoint", "stub-model", "--dataset", bench, "--output", str(out), "--model_kwargs",
               json.dumps({"base_url": srv.url, "timeout": 20}), "--levels", "1,3", "--batch_size", "1",
               "--limit", str(LIMIT), "--no_progress"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, env=env)
        deadline = time.time() + 240
        while time.time() < deadline and len(seen) < 10 and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(seen) == 10, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert not os.path.exists(out / "openai_vqa_results.parquet")
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_parquet(out / "openai_vqa_results.parquet")
    assert not df.duplicated(["kind", "name", "level", "image_id"]).any()
    assert len(df) == LIMIT * 5
    counts = pd.Series(seen).value_counts()
    # every answered request was asked once; the one in flight when the run was killed (never answered) twice
    assert len(counts) == len(df)
    assert (counts > 1).sum() == 1 and counts.max() == 2


def test_one_and_two_processes_give_identical_rows(bench, tmp_path):
    common = ["--task", "vqa", "--model", "medgemma", "--model_kwargs", '{"size": "tiny"}', "--dataset", bench,
              "--configs", "translate_l1", "--levels", "1", "--limit", "3", "--batch_size", "2",
              "--max_new_tokens", "3", "--no_progress"]
    from medfm_hf.evaluation.args import parse_eval_args

    evaluate(parse_eval_args([*common, "--output", str(tmp_path / "one")]))  # the same arguments, in process
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          os.path.join(ROOT, "accelerate_configs", "cpu_2proc.yaml"), "--main_process_port", "29547",
                          os.path.join(ROOT, "evaluate.py"), *common, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert two.returncode == 0, two.stderr[-3000:]
    a = pd.read_parquet(tmp_path / "one" / "medgemma_vqa_results.parquet").drop(columns=["seconds"])
    b = pd.read_parquet(tmp_path / "two" / "medgemma_vqa_results.parquet").drop(columns=["seconds"])
    assert len(a) == 6 and a["option_probs"].notna().all()
    pd.testing.assert_frame_equal(a, b)
    ranks = [json.load(open(p)) for p in sorted(glob.glob(str(tmp_path / "two" / ".medfm" / "rank*.json")))]
    assert [r["world"] for r in ranks] == [2, 2] and all(r["processed"] for r in ranks)


@pytest.mark.parametrize("kw,msg", [
    (dict(attacks="fgsm"), "--attacks apply to segmentation only"),
    (dict(model="medsam"), "unknown vision-language model"),
    (dict(model_kwargs='{"api_key": "x"}'), "must not hold an API key"),
    (dict(model_kwargs='{"batch_size": 3}'), "set by the evaluator"),
    (dict(task="vqaa"), "unknown --task"),
    (dict(max_new_tokens=0), "--max_new_tokens must be >= 1"),
])
def test_bad_vlm_arguments_are_one_line_errors(bench, tmp_path, kw, msg):
    base = dict(task="vqa", model="medgemma", dataset=bench, output=str(tmp_path / "x"),
                model_kwargs='{"size": "tiny"}', no_progress=True)
    base.update(kw)
    with pytest.raises(EvaluationError, match=msg):
        evaluate(EvalArguments(**base))
    assert not os.path.exists(tmp_path / "x" / ".medfm")


def test_benchmark_moves_the_target_box_with_geometric_perturbations(bench):
    clean = {r["image_id"]: r["target_bbox"] for r in _rows(bench, "clean")}
    moved = [r["target_bbox"] != clean[r["image_id"]] for r in _rows(bench, "translate_l3") if r["target_bbox"]]
    same = [r["target_bbox"] == clean[r["image_id"]] for r in _rows(bench, "gaussian_noise_l3")]
    assert any(moved) and all(same)
    rows = _rows(bench, "clean")
    assert all(r["question"] and len(r["options"]) == 4 and r["answer"] in "ABCD" and r["caption"] for r in rows)


def test_demo_vlm_pipeline_check(bench, tmp_path):
    """The default demo's VLM part: a tiny random model, labelled as a pipeline check, every file written."""
    import argparse

    from medfm_hf.tasks.demo import add_vlm_arguments, run_vlm_demo

    parser = argparse.ArgumentParser()
    add_vlm_arguments(parser)
    args = parser.parse_args(["--vlm-limit", "1"])
    runs = run_vlm_demo(args, bench, str(tmp_path))
    assert set(runs) == {"vqa", "caption", "grounding"}
    report = open(tmp_path / "VLM_REPORT.md").read()
    assert "PIPELINE CHECK" in report
    for task, res in runs.items():
        folder = tmp_path / "results" / "vlm" / "medgemma" / task
        assert (folder / f"medgemma_{task}_results.parquet").exists() and (folder / "run.json").exists()
        assert set(res["results"]["name"]) == {"clean", "gaussian_noise", "translate"}
        assert "pipeline check" in open(folder / "README.md").read()
    assert parser.parse_args(["--vlm", "none"]).vlm == "none"
    assert run_vlm_demo(parser.parse_args(["--vlm", "none"]), bench, str(tmp_path)) is None


def test_option_letter_probs_batched_equal_single_and_sum_to_one():
    from medfm_hf.tasks.vqa import option_letter_probs
    from medfm_hf.vlm import GenerationConfig, create_vlm

    vlm = create_vlm("medgemma", size="tiny")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    queries = [vlm.make_query(imgs[0], "Which organ?\nA. liver\nB. lung\nAnswer with the letter."),
               vlm.make_query(imgs[1], "Is the lesion in the left or right lung? A. left B. right C. both D. none")]
    cfg = GenerationConfig(max_new_tokens=4)
    both = option_letter_probs(vlm, queries, [2, 4], cfg)
    alone = [option_letter_probs(vlm, [q], [n], cfg)[0] for q, n in zip(queries, [2, 4])]
    for b, a in zip(both, alone):
        assert len(b) == len(a) and sum(b) == pytest.approx(1.0)
        assert b == pytest.approx(a, abs=1e-5)
    # the tiny model sees the image: the same prompt with another image gives other probabilities
    other = option_letter_probs(vlm, [vlm.make_query(imgs[1], queries[0].prompt)], [2], cfg)[0]
    assert max(abs(x - y) for x, y in zip(other, alone[0])) > 1e-4


def test_expected_calibration_error_by_hand():
    from medfm_hf.tasks.vqa import expected_calibration_error

    # bins (0.8, 0.9]: conf 0.85 x2, acc 0.5 -> |0.5-0.85| * 2/5; (0.2, 0.3]: conf 0.25 x3, acc 1/3
    conf = [0.85, 0.85, 0.25, 0.25, 0.25]
    correct = [1, 0, 1, 0, 0]
    assert expected_calibration_error(conf, correct) == pytest.approx(0.35 * 0.4 + abs(1 / 3 - 0.25) * 0.6)
    assert np.isnan(expected_calibration_error([], []))


def test_caption_cider_uses_the_clean_references_idf():
    """A caption's CIDEr-D does not depend on which perturbed rows are scored beside it."""
    from medfm_hf.tasks.caption import caption_scores

    refs = ["ct image showing a small nodule in the upper left", "mri image showing a large tumour in the lower right",
            "x-ray image showing a medium opacity in the upper right"]
    clean = pd.DataFrame({"image_id": ["a", "b", "c"], "kind": "clean", "reference": refs, "parsed": refs})
    pert = pd.DataFrame({"image_id": ["a", "b"], "kind": "perturbation",
                         "reference": refs[:2], "parsed": ["ct image showing a nodule", "an image"]})
    full = caption_scores(pd.concat([clean, pert], ignore_index=True))
    fewer = caption_scores(pd.concat([clean, pert.iloc[:1]], ignore_index=True))
    assert full["cider"].iloc[3] == pytest.approx(fewer["cider"].iloc[3])
    assert full["cider"].iloc[0] > full["cider"].iloc[3] > full["cider"].iloc[4] >= 0


def test_task_specs_on_rows_shaped_like_each_vlm_source():
    """OmniMedVQA (vqa), ROCO (caption) and MeCoVQA-G (grounding) rows: who takes them, prompts, scores."""
    from medfm_hf.records import Record
    from medfm_hf.tasks import get_task
    from medfm_hf.vlm.base import YXYX_1000

    class Fam:  # what the specs read from a model
        name = family = "medgemma"
        box_convention = YXYX_1000

    img = np.zeros((100, 200), np.uint8)
    omni = Record("omnimedvqa/q1", "omnimedvqa", "ct", "vqa", img, "test", question="Is there a fracture?",
                  options=["No", "Yes"], answer="B").to_row()
    roco = Record("roco/r1", "roco", "xray", "caption", img, "test", caption="Chest X-ray with a left effusion.").to_row()
    meco = Record("mecovqa/m1", "mecovqa", "mri", "grounding", img, "test", question="Where is the tumour?",
                  target_bbox=[20.0, 10.0, 60.0, 50.0]).to_row()
    vqa, cap, gnd = get_task("vqa"), get_task("caption"), get_task("grounding")
    assert [vqa.wants(r) for r in (omni, roco, meco)] == [True, False, False]
    assert [cap.wants(r) for r in (omni, roco, meco)] == [False, True, False]
    assert [gnd.wants(r) for r in (omni, roco, meco)] == [False, False, True]
    assert vqa.prompt(omni, Fam()) == ("Is there a fracture?\nA. No\nB. Yes\nAnswer with the letter of the correct "
                                       "option (A, B) only.")
    assert vqa.score("Yes.", omni, Fam(), (200, 100))["correct"] == 1.0
    assert vqa.score("It is not B.", omni, Fam(), (200, 100))["parsed"] is None
    p = gnd.prompt(meco, Fam())
    assert p.startswith("Where is the tumour?\n") and "box_2d" in p
    s = gnd.score('{"box_2d": [100, 100, 500, 300]}', meco, Fam(), (200, 100))  # = [20, 10, 60, 50] px
    assert s["iou"] == pytest.approx(1.0) and s["hit@0.75"] == 1.0 and s["centre_hit"] == 1.0
    assert gnd.score("no lesion", meco, Fam(), (200, 100))["iou"] == 0.0
