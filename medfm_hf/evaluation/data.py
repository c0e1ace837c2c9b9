"""Reading a benchmark folder (or Hub repo) config by config, straight from its parquet files."""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass

import numpy as np

from medfm_hf.benchmark.features import parse_config_name
from medfm_hf.records import decode_png, png_shape


class EvaluationError(ValueError):
    """The evaluation cannot start: the message says what was wrong and what to do."""


def resolve_dataset(path_or_repo: str) -> str:
    """A local folder as is; a Hub dataset repo id is downloaded (snapshot) and its local path returned."""
    if os.path.isdir(path_or_repo):
        return path_or_repo
    if path_or_repo.count("/") == 1 and not path_or_repo.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(path_or_repo, repo_type="dataset")
        except Exception as exc:  # noqa: BLE001 - turn any hub error into a clear message
            raise EvaluationError(f"could not get dataset {path_or_repo!r} from the Hub: {exc}") from exc
    raise EvaluationError(f"dataset {path_or_repo!r} is neither a folder nor a Hub repo id (ORG/NAME)")


@dataclass
class Row:
    image_id: str
    source: str
    modality: str
    image: np.ndarray
    mask: np.ndarray | None
    bbox: list[int] | None
    strength: float | None = None
    ssim: float | None = None
    in_band: bool | None = None


class Benchmark:
    """The configs of a benchmark folder and lazy access to their rows."""

    def __init__(self, path_or_repo: str):
        self.path = resolve_dataset(path_or_repo)
        data = os.path.join(self.path, "data")
        self.configs = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d))) if \
            os.path.isdir(data) else []
        if "clean" not in self.configs:
            raise EvaluationError(
                f"{path_or_repo} has no 'clean' config (data/clean/test-*.parquet); build it with "
                "`medfm-robust build` first"
            )
        self._cache: dict[tuple[str, str], list[dict]] = {}

    def perturbation_configs(self) -> list[str]:
        return [c for c in self.configs if parse_config_name(c) is not None]

    def select(self, spec: str, levels: list[int]) -> list[str]:
        """Configs named by ``spec`` (``all``, ``none`` or comma-separated names/globs) at ``levels``."""
        spec = spec.strip()
        avail = self.perturbation_configs()
        if spec in ("none", ""):
            return []
        if spec == "all":
            chosen = avail
        else:
            chosen = []
            for pat in (p.strip() for p in spec.split(",") if p.strip()):
                hits = [c for c in avail if fnmatch.fnmatchcase(c, pat)]
                if not hits:
                    import difflib

                    close = difflib.get_close_matches(pat, avail, n=3)
                    raise EvaluationError(
                        f"config {pat!r} not in {self.path}" + (f"; did you mean {', '.join(close)}?" if close else "")
                        + f" ({len(avail)} perturbed configs available, e.g. {', '.join(avail[:5])})"
                    )
                chosen += [h for h in hits if h not in chosen]
        return [c for c in chosen if parse_config_name(c)[1] in levels]

    def table(self, config: str, split: str = "test") -> list[dict]:
        key = (config, split)
        if key not in self._cache:
            import pyarrow.parquet as pq

            files = sorted(glob.glob(os.path.join(self.path, "data", config, f"{split}-*.parquet")))
            if not files:
                raise EvaluationError(f"config {config!r} has no {split} split in {self.path}")
            rows: list[dict] = []
            for f in files:
                rows += pq.read_table(f).to_pylist()
            rows.sort(key=lambda r: r["image_id"])
            if len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = rows
        return self._cache[key]

    def row(self, config: str, index: int) -> Row:
        r = self.table(config)[index]
        mask = None if r.get("mask") is None else decode_png(r["mask"]["bytes"]) > 127
        return Row(
            image_id=r["image_id"], source=r["source"], modality=r["modality"], image=decode_png(r["image"]["bytes"]),
            mask=mask, bbox=r.get("bbox"), strength=r.get("strength"), ssim=r.get("ssim"), in_band=r.get("in_band"),
        )

    def shape_of(self, config: str, index: int) -> tuple[int, ...]:
        """The stored image's shape, read from its PNG header (decoded only for other formats)."""
        data = self.table(config)[index]["image"]["bytes"]
        return png_shape(data) or decode_png(data).shape
