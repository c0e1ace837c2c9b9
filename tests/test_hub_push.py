"""`medfm-robust push` talks to the Hub correctly (HTTP layer intercepted; nothing leaves the machine)."""

from __future__ import annotations

import base64
import json

import httpx2
import pytest
from huggingface_hub import constants
from huggingface_hub.utils import _http

from medfm_hf.cli import main


@pytest.fixture()
def fake_hub(monkeypatch):
    calls: list[tuple[str, str, bytes]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        calls.append((request.method, request.url.path, body))
        path = request.url.path
        if path == "/api/repos/create":
            payload = json.loads(body)
            return httpx2.Response(200, json={"url": f"{constants.ENDPOINT}/datasets/{payload['organization']}/"
                                                     f"{payload['name']}", "name": payload["name"]})
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular",
                                                         "shouldIgnore": False} for f in files]})
        if "/commit/" in path:
            return httpx2.Response(200, json={"commitUrl": f"{constants.ENDPOINT}/datasets/org/x/commit/1", "commitOid": "a" * 40,
                                              "pullRequestUrl": None})
        if "/branch/" in path:
            return httpx2.Response(200, json={})
        return httpx2.Response(200, json={})

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(handler)))
    yield calls
    _http.set_client_factory(_http.default_client_factory)


def _commit_files(calls):
    for _method, path, body in calls:
        if "/commit/" in path:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            return {entry["value"]["path"]: base64.b64decode(entry["value"]["content"])
                    for entry in lines if entry["key"] == "file"}, path
    raise AssertionError("no commit request")


def test_push_builds_right_requests(tmp_path, fake_hub):
    folder = tmp_path / "bench"
    (folder / "data" / "clean").mkdir(parents=True)
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: clean\n---\n# card\n")
    (folder / "data" / "clean" / "test-00000-of-00001.parquet").write_bytes(b"PAR1 fake")
    (folder / ".medfm").mkdir()
    (folder / ".medfm" / "build.json").write_text("{}")
    assert main(["push", str(folder), "--repo-id", "org/medfm-robust", "--private"]) == 0
    create = next(json.loads(b) for m, p, b in fake_hub if p == "/api/repos/create")
    assert create["type"] == "dataset" and create.get("visibility", "private" if create.get("private") else "") == "private"
    assert create["name"] == "medfm-robust" and create["organization"] == "org"
    files, path = _commit_files(fake_hub)
    assert path.startswith("/api/datasets/org/medfm-robust/commit/")
    assert set(files) == {"README.md", "data/clean/test-00000-of-00001.parquet"}  # .medfm state not uploaded
    assert files["README.md"].startswith(b"---\nconfigs:")


def test_push_revision_creates_branch(tmp_path, fake_hub):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "README.md").write_text("# results\n")
    assert main(["push", str(folder), "--repo-id", "org/res", "--revision", "v1"]) == 0
    assert any("/branch/v1" in p for _, p, _ in fake_hub)
    _, path = _commit_files(fake_hub)
    assert path.endswith("/commit/v1")


def test_push_bad_input(tmp_path):
    assert main(["push", str(tmp_path / "missing"), "--repo-id", "org/x"]) == 2
    (tmp_path / "nocard").mkdir()
    assert main(["push", str(tmp_path / "nocard"), "--repo-id", "org/x"]) == 2
    (tmp_path / "nocard" / "README.md").write_text("x")
    assert main(["push", str(tmp_path / "nocard"), "--repo-id", "noslash"]) == 2
