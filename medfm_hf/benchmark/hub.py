"""Publishing a dataset folder (a benchmark build or a results folder) to the Hugging Face Hub."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

IGNORE = [".medfm/*", "*.tmp-*", "**/.ipynb_checkpoints/*"]


def push_folder(folder: str, repo_id: str, *, private: bool = False, revision: str | None = None,
                token: str | None = None, commit_message: str | None = None, large: bool = False) -> str:
    """Create (if needed) the dataset repo ``repo_id`` and upload ``folder``; returns the repo URL.

    The token comes from ``token``, else ``HF_TOKEN`` or the cached ``huggingface-cli login``. ``large``
    uses ``upload_large_folder`` (resumable, many files).
    """
    from huggingface_hub import HfApi

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    if not os.path.exists(os.path.join(folder, "README.md")):
        raise FileNotFoundError(f"{folder} has no README.md dataset card; build it with medfm-robust first")
    if "/" not in repo_id:
        raise ValueError(f"repo id must look like ORG/NAME, got {repo_id!r}")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    if large:
        api.upload_large_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset", revision=revision,
                                private=private, ignore_patterns=IGNORE)
    else:
        api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="dataset", revision=revision,
                          commit_message=commit_message or "Upload with medfm-robust", ignore_patterns=IGNORE)
    logger.info("pushed %s to %s", folder, url)
    return str(url)
