"""Reading a built benchmark back, config by config, beside the builder that wrote it.

:class:`BenchmarkReader` is what the evaluator reads through. It finds configs and files with
:mod:`medfm_hf.benchmark.layout`, checks each file it reads against the build manifest (size and SHA-256),
so a corrupt or edited shard is named (config and file) before any model runs on it, and exposes the
dataset fingerprint that runs record. Rows are decoded lazily; a row that cannot be decoded is named too.

Reading the parquet files directly (not through :func:`datasets.load_dataset`) is faster for this access
pattern, verification included: 0.22 s per config against 0.28 s (first load) and 0.25 s (cached) for
``load_dataset`` plus the same decoding (``python benchmarks/reader_bench.py``, docs/build_benchmark.md).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfm_hf.benchmark import layout
from medfm_hf.benchmark.layout import BenchmarkError
from medfm_hf.records import RecordError, decode_png, png_shape


def resolve_dataset(path_or_repo: str) -> tuple[str, str | None]:
    """``(local folder, Hub revision or None)``: a folder as is; a Hub dataset repo id is downloaded."""
    if os.path.isdir(path_or_repo):
        return path_or_repo, None
    if path_or_repo.count("/") == 1 and not path_or_repo.startswith((".", "/")):
        from huggingface_hub import snapshot_download

        try:
            local = snapshot_download(path_or_repo, repo_type="dataset")
        except Exception as exc:  # noqa: BLE001 - turn any hub error into a clear message
            raise BenchmarkError(f"could not get dataset {path_or_repo!r} from the Hub: {exc}") from None
        revision = os.path.basename(os.path.normpath(local))  # snapshots/<commit>
        return local, revision
    raise BenchmarkError(f"dataset {path_or_repo!r} is neither a folder nor a Hub repo id (ORG/NAME)")


@dataclass
class Row:
    """One benchmark row as the evaluator needs it (decoded image and mask, calibration fields)."""

    image_id: str
    source: str
    modality: str
    image: np.ndarray
    mask: np.ndarray | None
    bbox: list[int] | None
    strength: float | None = None
    ssim: float | None = None
    in_band: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_ROW_FIELDS = {"image_id", "source", "modality", "image", "mask", "bbox", "strength", "ssim", "in_band"}


class BenchmarkReader:
    """The configs of a benchmark folder (or Hub repo) and verified, lazy access to their rows.

    Parameters
    ----------
    path_or_repo
        A build folder or a Hub dataset repo id.
    verify
        Check every file read against the manifest (size and SHA-256). Without a manifest nothing can be
        checked; :attr:`complete` is then ``False``.
    """

    def __init__(self, path_or_repo: str, *, verify: bool = True):
        self.path, self.revision = resolve_dataset(path_or_repo)
        self.name = path_or_repo
        self.configs = layout.configs_on_disk(self.path)
        if layout.CLEAN not in self.configs:
            raise BenchmarkError(
                f"{path_or_repo} has no 'clean' config ({layout.data_glob(layout.CLEAN, 'test')}); build it with "
                "`medfm-robust build` first"
            )
        self.manifest = layout.read_manifest(self.path)
        state = layout.read_build_state(self.path)
        if self.manifest is not None and self.manifest.get("complete"):
            self.complete, self.incomplete_reason = True, None
        elif state is not None and not state.get("complete"):
            self.complete = False
            self.incomplete_reason = "its build did not finish (rerun the same build command to complete it)"
        else:
            self.complete = False
            self.incomplete_reason = f"it has no {layout.MANIFEST} (built by an older medfm_hf, or not a build)"
        if self.manifest is not None:
            listed = {f.split("/")[1] for f in self.manifest.get("files", {}) if f.startswith(layout.DATA_DIR + "/")}
            self.configs = [c for c in self.configs if c in listed]
        self.verify = verify
        self._cache: dict[tuple[str, str], list[dict]] = {}
        self._files: dict[tuple[str, str], list[str]] = {}
        self._fingerprint: str | None = None
        self._verified: set[str] = set()  # files already checked against the manifest (not hashed twice)

    # ---- identity -----------------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """The dataset fingerprint (:func:`~medfm_hf.benchmark.layout.data_fingerprint`).

        From the manifest when there is one, else by hashing the data files on disk.
        """
        if self._fingerprint is None:
            if self.manifest is not None:
                self._fingerprint = layout.data_fingerprint(self.manifest.get("files", {}))
            else:
                from medfm_hf.io import sha256_file

                files = {}
                for cfg in self.configs:
                    for split in ("train", "validation", "test"):
                        for rel in layout.config_files(self.path, cfg, split):
                            files[rel] = {"sha256": sha256_file(layout.path(self.path, rel))}
                self._fingerprint = layout.data_fingerprint(files)
        return self._fingerprint

    # ---- configs ------------------------------------------------------------------------------------

    def perturbation_configs(self) -> list[str]:
        return [c for c in self.configs if layout.parse_config_name(c) is not None]

    def select(self, spec: str, levels: list[int] | tuple[int, ...]) -> list[str]:
        """Configs named by ``spec`` (``all``, ``none`` or comma-separated names/globs) at ``levels``.

        A name that exists but lies outside ``levels`` is an error, never a silent drop.
        """
        spec = spec.strip()
        avail = self.perturbation_configs()
        if spec in ("none", ""):
            return []
        if spec == "all":
            return [c for c in avail if layout.parse_config_name(c)[1] in levels]
        chosen: list[str] = []
        for pat in (p.strip() for p in spec.split(",") if p.strip()):
            hits = [c for c in avail if fnmatch.fnmatchcase(c, pat)]
            if not hits:
                import difflib

                close = difflib.get_close_matches(pat, avail, n=3)
                raise BenchmarkError(
                    f"config {pat!r} not in {self.name}" + (f"; did you mean {', '.join(close)}?" if close else "")
                    + f" ({len(avail)} perturbed configs available, e.g. {', '.join(avail[:5])})"
                )
            in_levels = [h for h in hits if layout.parse_config_name(h)[1] in levels]
            if not in_levels:
                raise BenchmarkError(f"config {pat!r} matches only levels outside --levels {list(levels)}; add its "
                                     "level to --levels or drop it from --configs")
            chosen += [h for h in in_levels if h not in chosen]
        return chosen

    def files(self, config: str, split: str = "test") -> list[str]:
        """The config split's files: from the manifest when there is one, else what is on disk."""
        key = (config, split)
        if key not in self._files:
            if self.manifest is not None:
                prefix = f"{layout.DATA_DIR}/{config}/{split}-"
                files = sorted(f for f in self.manifest.get("files", {}) if f.startswith(prefix))
            else:
                files = layout.config_files(self.path, config, split)
            self._files[key] = files
        return self._files[key]

    def check(self, configs: list[str]) -> None:
        """Verify every file of ``configs`` now (size and SHA-256); raise naming the first bad one."""
        for cfg in configs:
            for split in ("test",):
                for rel in self.files(cfg, split):
                    self._read_bytes(cfg, rel)

    # ---- rows ---------------------------------------------------------------------------------------

    def _read_bytes(self, config: str, rel: str) -> bytes:
        full = layout.path(self.path, rel)
        try:
            with open(full, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise BenchmarkError(f"config {config!r}: cannot read {rel} ({exc.strerror}); run `medfm-robust verify "
                                 f"{self.path}` and rebuild") from None
        if self.verify and self.manifest is not None and rel not in self._verified:
            import hashlib

            info = self.manifest.get("files", {}).get(rel)
            if info is None or len(data) != info.get("size") or hashlib.sha256(data).hexdigest() != info.get("sha256"):
                raise BenchmarkError(
                    f"config {config!r}: {rel} does not match the build manifest (corrupt or changed); run "
                    f"`medfm-robust verify {self.path}` and rerun the build to repair it")
            self._verified.add(rel)
        return data

    def table(self, config: str, split: str = "test") -> list[dict]:
        key = (config, split)
        if key not in self._cache:
            import pyarrow as pa
            import pyarrow.parquet as pq

            files = self.files(config, split)
            if not files:
                raise BenchmarkError(f"config {config!r} has no {split} split in {self.name}; the build may be "
                                     "incomplete (rerun it, or `medfm-robust verify` the folder)")
            rows: list[dict] = []
            for rel in files:
                data = self._read_bytes(config, rel)
                try:
                    rows += pq.read_table(pa.BufferReader(data)).to_pylist()
                except (pa.ArrowException, OSError) as exc:
                    raise BenchmarkError(f"config {config!r}: {rel} is not a readable parquet file ({exc}); "
                                         "rebuild it") from None
            rows.sort(key=lambda r: r["image_id"])
            if len(self._cache) > 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = rows
        return self._cache[key]

    def row(self, config: str, index: int) -> Row:
        r = self.table(config)[index]
        try:
            image = decode_png(r["image"]["bytes"])
            mask = None if r.get("mask") is None else decode_png(r["mask"]["bytes"]) > 127
        except (RecordError, TypeError, KeyError) as exc:
            raise BenchmarkError(f"config {config!r}, image {r.get('image_id')!r}: {exc}; rebuild the config") \
                from None
        return Row(
            image_id=r["image_id"], source=r["source"], modality=r["modality"], image=image, mask=mask,
            bbox=r.get("bbox"), strength=r.get("strength"), ssim=r.get("ssim"), in_band=r.get("in_band"),
            extra={k: v for k, v in r.items() if k not in _ROW_FIELDS and not isinstance(v, dict)},
        )

    def shape_of(self, config: str, index: int) -> tuple[int, ...]:
        """The stored image's shape, read from its PNG header (decoded only for other formats)."""
        r = self.table(config)[index]
        data = r["image"]["bytes"]
        shape = png_shape(data)
        if shape is None:
            try:
                shape = decode_png(data).shape
            except RecordError as exc:
                raise BenchmarkError(f"config {config!r}, image {r.get('image_id')!r}: {exc}; rebuild the config") \
                    from None
        return shape


def open_benchmark(path_or_repo: str, **kwargs) -> BenchmarkReader:
    """Open a build folder or Hub repo for reading (see :class:`BenchmarkReader`)."""
    return BenchmarkReader(path_or_repo, **kwargs)


__all__ = ["BenchmarkError", "BenchmarkReader", "Row", "open_benchmark", "resolve_dataset"]
