"""Loading helpers around :func:`datasets.load_dataset` with clear errors for unknown configs."""

from __future__ import annotations

import os

from medfm_hf.benchmark import layout


def list_configs(path_or_repo: str) -> list[str]:
    """Config names of a benchmark folder (from its card) or Hub repo (``clean`` first)."""
    if os.path.isdir(path_or_repo):
        names = layout.configs_in_card(path_or_repo)
        if names is None:
            raise FileNotFoundError(f"{path_or_repo} has no README.md: is it a medfm-robust build folder?")
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
    if split is None and config != layout.CLEAN:
        split = "test"
    return load_dataset(path_or_repo, config, split=split, **kwargs)
