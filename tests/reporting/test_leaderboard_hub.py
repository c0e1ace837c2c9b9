"""The leaderboard dataset (load_dataset gives it back, push talks to the Hub correctly) and Hub inputs to
`report` (HTTP layer intercepted; nothing leaves the machine)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os

import httpx2
import pandas as pd
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http

from medfm_hf.cli import main


def _intercept(monkeypatch, handler):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(handler)))


@pytest.fixture()
def restore_http():
    yield
    _http.set_client_factory(_http.default_client_factory)


def test_leaderboard_roundtrip(results_dirs, tmp_path):
    from datasets import load_dataset

    out = str(tmp_path / "lb")
    assert main(["leaderboard", *results_dirs, "--out", out, "--n-boot", "200"]) == 0
    rows = load_dataset(out, split="train", cache_dir=str(tmp_path / "cache")).to_pandas()
    ref = pd.read_parquet(os.path.join(out, "data", "leaderboard.parquet"))
    pd.testing.assert_frame_equal(rows, ref, check_dtype=False)
    # one row per (run, model, task, kind, perturbation, level), with the run's metadata
    assert not rows.duplicated(["run", "model", "task", "kind", "perturbation", "level"]).any()
    gc = pd.read_parquet(os.path.join(results_dirs[0], "grabcut_results.parquet"))
    assert len(rows[rows["run"] == "grabcut"]) == gc.groupby(["kind", "name", "level"]).ngroups
    cell = rows[(rows["model"] == "grabcut") & (rows["perturbation"] == "rotate") & (rows["level"] == 3)].iloc[0]
    g = gc[(gc["name"] == "rotate") & (gc["level"] == 3)]
    assert cell["score"] == pytest.approx(g["iou"].mean()) and cell["drop"] == pytest.approx(g["iou_drop"].mean())
    assert cell["drop_lo"] <= cell["drop"] <= cell["drop_hi"]
    assert cell["git_revision"] == "0" * 40 and json.loads(cell["seeds"]) == {"attack_seed": 0}
    summary = load_dataset(out, "summary", split="train", cache_dir=str(tmp_path / "cache")).to_pandas()
    assert list(summary["rank"]) == [1, 2]
    card = open(os.path.join(out, "README.md")).read()
    assert card.startswith("---\nconfigs:") and "| rank |" in card
    first = summary.iloc[0]["model"]
    assert card.index(f"| 1 | segmentation | iou | {first} |") > 0


def test_leaderboard_push(results_dirs, tmp_path, monkeypatch, restore_http):
    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        calls.append((request.method, request.url.path, body))
        path = request.url.path
        if path == "/api/repos/create":
            p = json.loads(body)
            return httpx2.Response(200, json={"url": f"{constants.ENDPOINT}/datasets/{p['organization']}/{p['name']}"})
        if "/preupload/" in path:
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in json.loads(body)["files"]]})
        if "/commit/" in path:
            return httpx2.Response(200, json={"commitUrl": f"{constants.ENDPOINT}/datasets/org/leaderboard/commit/1", "commitOid": "a" * 40, "pullRequestUrl": None})
        return httpx2.Response(200, json={})

    _intercept(monkeypatch, handler)
    out = str(tmp_path / "lb")
    assert main(["leaderboard", *results_dirs, "--out", out, "--n-boot", "100", "--push", "org/leaderboard"]) == 0
    commit = next(b for m, p, b in calls if p.startswith("/api/datasets/org/leaderboard/commit/"))
    files = {e["value"]["path"]: base64.b64decode(e["value"]["content"])
             for e in map(json.loads, commit.decode().splitlines()) if e["key"] == "file"}
    assert set(files) == {"README.md", "data/leaderboard.parquet", "data/summary.parquet"}
    pushed = pd.read_parquet(io.BytesIO(files["data/leaderboard.parquet"]))
    pd.testing.assert_frame_equal(pushed, pd.read_parquet(os.path.join(out, "data", "leaderboard.parquet")))


def test_report_from_hub_id(results_dirs, tmp_path, monkeypatch, restore_http):
    folder = results_dirs[1]
    files = {f: open(os.path.join(folder, f), "rb").read() for f in os.listdir(folder)}
    sha = "b" * 40

    def handler(request: httpx2.Request) -> httpx2.Response:
        p = request.url.path
        if p.startswith("/api/datasets/org/sam-results/revision/"):
            return httpx2.Response(200, json={"id": "org/sam-results", "sha": sha,
                                              "siblings": [{"rfilename": f} for f in files]})
        if p.startswith("/api/datasets/org/sam-results/tree/"):
            return httpx2.Response(200, json=[{"type": "file", "path": f, "size": len(b),
                                               "oid": hashlib.sha1(b).hexdigest()} for f, b in files.items()])
        if p.startswith("/datasets/org/sam-results/resolve/"):
            body = files[p.split("/resolve/")[1].split("/", 1)[1]]
            headers = {"x-repo-commit": sha, "etag": f'"{hashlib.sha1(body).hexdigest()}"',
                       "content-length": str(len(body))}
            return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)
        return httpx2.Response(404, json={"error": "not found"})

    _intercept(monkeypatch, handler)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    out = str(tmp_path / "rep")
    assert main(["report", results_dirs[0], "org/sam-results", "--out", out, "--n-boot", "100"]) == 0
    ov = pd.read_csv(os.path.join(out, "tables", "overview.csv"))
    assert list(ov["model"]) == ["grabcut", "sam"]
    local = pd.read_parquet(os.path.join(folder, "sam_results.parquet"))
    assert ov.loc[1, "clean"] == pytest.approx(local.loc[local["kind"] == "clean", "iou"].mean())
    assert main(["report", "org/missing", "--out", out]) == 2
