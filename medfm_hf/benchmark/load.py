"""Loading helpers around :func:`datasets.load_dataset` with clear errors for unknown configs."""

from __future__ import annotations

import os


def list_configs(path_or_repo: str) -> list[str]:
    """Config names of a benchmark folder or Hub repo (``clean`` first)."""
    if os.path.isdir(path_or_repo):
        card = os.path.join(path_or_repo, "README.md")
        if not os.path.exists(card):
            raise FileNotFoundError(f"{path_or_repo} has no README.md: is it a medfm-robust build folder?")
        names = []
        with open(card, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("- config_name:"):
                    names.append(line.split(":", 1)[1].strip())
        return names
    from datasets import get_dataset_config_names

    return list(get_dataset_config_names(path_or_repo))


def load_config(path_or_repo: str, config: str, split: str | None = None, **kwargs):
    """``load_dataset(path_or_repo, config, split=...)`` after checking that ``config`` exists."""
    from datasets import load_dataset

    names = list_configs(path_or_repo)
    if config not in names:
        import difflib

        close = difflib.get_close_matches(config, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown config {config!r} in {path_or_repo}.{hint} Valid configs: {', '.join(names)}"
        )
    if split is None and config != "clean":
        split = "test"
    return load_dataset(path_or_repo, config, split=split, **kwargs)
