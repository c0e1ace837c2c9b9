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


class FakeHub:
    """Answers the Hub's HTTP API from memory: serves the files of dataset repos and records commits."""

    sha = "b" * 40

    def __init__(self, repos: dict[str, dict[str, bytes]] | None = None) -> None:
        self.repos = repos or {}
        self.commits: dict[str, dict[str, bytes]] = {}
        self.created: list[dict] = []

    def _files_of(self, path: str) -> tuple[str, dict[str, bytes]] | None:
        for repo, files in self.repos.items():
            if path.startswith((f"/api/datasets/{repo}/", f"/datasets/{repo}/")):
                return repo, files
        return None

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body, path = request.read(), request.url.path
        found = self._files_of(path)
        if path == "/api/repos/create":
            p = json.loads(body)
            self.created.append(p)
            return httpx2.Response(200, json={"url": f"{constants.ENDPOINT}/datasets/{p['organization']}/{p['name']}"})
        if "/preupload/" in path:
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(body)["files"]]
            return httpx2.Response(200, json={"files": files})
        if "/commit/" in path:
            repo = path.split("/api/datasets/")[1].split("/commit/")[0]
            entries = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            self.commits[repo] = {e["value"]["path"]: base64.b64decode(e["value"]["content"])
                                  for e in entries if e["key"] == "file"}
            return httpx2.Response(200, json={"commitUrl": f"{constants.ENDPOINT}/datasets/{repo}/commit/1",
                                              "commitOid": "a" * 40, "pullRequestUrl": None})
        if found is None and not path.startswith("/api/datasets/"):
            return httpx2.Response(200, json={})  # create_branch, validate-yaml, ...
        if found is None:
            return httpx2.Response(404, json={"error": "not found"})
        repo, files = found
        if "/revision/" in path:
            return httpx2.Response(200, json={"id": repo, "sha": self.sha, "siblings": [{"rfilename": f} for f in files]})
        if "/tree/" in path:
            return httpx2.Response(200, json=[{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                              for f, b in files.items()])
        data = files[path.split("/resolve/")[1].split("/", 1)[1]]
        headers = {"x-repo-commit": self.sha, "etag": f'"{hashlib.sha1(data).hexdigest()}"', "content-length": str(len(data))}
        return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    fake = FakeHub()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake)))
    yield fake
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


def test_leaderboard_push(results_dirs, tmp_path, hub):
    out = str(tmp_path / "lb")
    assert main(["leaderboard", *results_dirs, "--out", out, "--n-boot", "100", "--push", "org/leaderboard",
                 "--private"]) == 0
    create = hub.created[0]
    assert create["name"] == "leaderboard" and create["type"] == "dataset"
    assert create.get("private") or create.get("visibility") == "private"
    files = hub.commits["org/leaderboard"]
    assert set(files) == {"README.md", "data/leaderboard.parquet", "data/summary.parquet"}
    pushed = pd.read_parquet(io.BytesIO(files["data/leaderboard.parquet"]))
    pd.testing.assert_frame_equal(pushed, pd.read_parquet(os.path.join(out, "data", "leaderboard.parquet")))


def test_report_from_hub_id(results_dirs, tmp_path, hub):
    folder = results_dirs[1]
    hub.repos["org/sam-results"] = {f: open(os.path.join(folder, f), "rb").read() for f in os.listdir(folder)}
    out = str(tmp_path / "rep")
    assert main(["report", results_dirs[0], "org/sam-results", "--out", out, "--n-boot", "100"]) == 0
    ov = pd.read_csv(os.path.join(out, "tables", "overview.csv"))
    assert list(ov["model"]) == ["grabcut", "sam"]
    local = pd.read_parquet(os.path.join(folder, "sam_results.parquet"))
    assert ov.loc[1, "clean"] == pytest.approx(local.loc[local["kind"] == "clean", "iou"].mean())
    assert main(["report", "org/missing", "--out", out]) == 2
