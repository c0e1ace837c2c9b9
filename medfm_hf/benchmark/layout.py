"""The on-disk layout of a benchmark build: the one module that knows names, paths and the manifest.

A build folder is a Hugging Face dataset repo::

    README.md                              card; YAML ``configs:`` point at the parquet files
    manifest.json                          what the build wrote: settings, every file's size and SHA-256
    bad_inputs.json                        inputs that were skipped (path and reason) and flagged
    calibration_report.csv                 per perturbation x level x modality
    gallery/<perturbation>.png
    splits/<source>.json                   the drawn train/validation/test assignment (reused by reruns)
    data/clean/<split>-00000-of-00001.parquet
    data/<perturbation>_l<level>/test-<source>.parquet
    .medfm/build.json                      private state: settings, input fingerprints, completeness
    .medfm/shards/<source>__<perturbation>.json   one marker per finished shard (with its input fingerprint)

Everything else in the package (the builder, the card, the reader used by the evaluator, ``verify``)
builds names and paths with the functions below; nobody concatenates ``_l`` or ``data/`` by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping

FORMAT_VERSION = 2
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
CLEAN = "clean"
DATA_DIR = "data"
STATE_DIR = ".medfm"
MANIFEST = "manifest.json"
CARD = "README.md"
REPORT = "calibration_report.csv"
BAD_INPUTS = "bad_inputs.json"
GALLERY_DIR = "gallery"
SPLITS_DIR = "splits"
BUILD_STATE = f"{STATE_DIR}/build.json"
SHARDS_DIR = f"{STATE_DIR}/shards"


class BenchmarkError(ValueError):
    """A benchmark folder cannot be built, read or trusted; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------------
# config names and levels
# ---------------------------------------------------------------------------------------------------


def config_name(perturbation: str, level: int) -> str:
    """``("ct_metal", 3)`` -> ``"ct_metal_l3"``."""
    return f"{perturbation}_l{int(level)}"


def parse_config_name(config: str) -> tuple[str, int] | None:
    """``"ct_metal_l3"`` -> ``("ct_metal", 3)``; ``None`` for ``clean`` or anything else.

    Only the final ``_l<digit>`` is split off, so names that contain ``_s`` or ``_l`` survive intact.
    """
    head, sep, tail = config.rpartition("_l")
    if sep and tail.isdigit() and head:
        return head, int(tail)
    return None


def parse_levels(text: str | Iterable[int]) -> list[int]:
    """``"1-5"``, ``"1,3,5"``, ``"2"`` (or a list of ints) -> the sorted levels, each in 1-5.

    Raises ``ValueError`` with one line naming the bad part for anything else (``"abc"``, ``"-1"``,
    ``"1.5"``, ``""``, ``"5-1"``).
    """
    if not isinstance(text, str):
        vals = list(text)
        if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v not in LEVELS for v in vals):
            raise ValueError(f"levels must be integers within 1-5, got {vals!r}")
        return sorted(set(vals))
    out: set[int] = set()
    hint = "(e.g. 1-5 or 1,3,5)"
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if not lo.strip().isdigit() or (dash and not hi.strip().isdigit()):
            raise ValueError(f"levels must be within 1-5 {hint}, got {text!r}: {part!r} is not a level or range")
        a, b = int(lo), int(hi) if dash else int(lo)
        if a > b:
            raise ValueError(f"levels must be within 1-5 {hint}, got {text!r}: range {part!r} runs backwards")
        out.update(range(a, b + 1))
    bad = sorted(v for v in out if v not in LEVELS)
    if bad or not out:
        raise ValueError(f"levels must be within 1-5 {hint}, got {text!r}")
    return sorted(out)


# ---------------------------------------------------------------------------------------------------
# paths (relative to the build folder, with "/" separators as in the manifest and the card)
# ---------------------------------------------------------------------------------------------------


def split_file_of(config: str, split: str) -> str:
    """The single parquet file of a config split written in one piece (the clean config, a demo set)."""
    return f"{DATA_DIR}/{config}/{split}-00000-of-00001.parquet"


def clean_file(split: str) -> str:
    return split_file_of(CLEAN, split)


def perturbed_file(perturbation: str, level: int, source: str) -> str:
    return f"{DATA_DIR}/{config_name(perturbation, level)}/test-{source}.parquet"


def data_glob(config: str, split: str) -> str:
    """The ``data_files`` pattern of a config's split, as written in the card."""
    return f"{DATA_DIR}/{config}/{split}-*.parquet"


def gallery_file(perturbation: str) -> str:
    return f"{GALLERY_DIR}/{perturbation}.png"


def split_file(source: str) -> str:
    return f"{SPLITS_DIR}/{source}.json"


def marker_file(source: str, perturbation: str) -> str:
    return f"{SHARDS_DIR}/{source}__{perturbation}.json"


def path(root: str, rel: str) -> str:
    """The absolute-or-relative filesystem path of ``rel`` inside the build folder ``root``."""
    return os.path.join(root, *rel.split("/"))


def config_files(root: str, config: str, split: str) -> list[str]:
    """The parquet files of one config split that exist in ``root`` (relative paths, sorted)."""
    folder = path(root, f"{DATA_DIR}/{config}")
    if not os.path.isdir(folder):
        return []
    prefix = f"{split}-"
    return sorted(f"{DATA_DIR}/{config}/{f}" for f in os.listdir(folder)
                  if f.startswith(prefix) and f.endswith(".parquet"))


def configs_on_disk(root: str) -> list[str]:
    """Config folders under ``root/data`` (``clean`` first, then sorted)."""
    folder = path(root, DATA_DIR)
    names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d))) \
        if os.path.isdir(folder) else []
    return ([CLEAN] if CLEAN in names else []) + [n for n in names if n != CLEAN]


def yaml_configs(clean_splits: Iterable[str], configs: Iterable[str]) -> str:
    """The card's ``configs:`` YAML block (``clean`` is the default config)."""
    import yaml

    entries = [{"config_name": CLEAN, "default": True,
                "data_files": [{"split": s, "path": data_glob(CLEAN, s)} for s in clean_splits]}]
    entries += [{"config_name": c, "data_files": [{"split": "test", "path": data_glob(c, "test")}]}
                for c in configs]
    return yaml.safe_dump({"configs": entries}, sort_keys=False, default_flow_style=False).rstrip("\n")


def configs_in_card(root: str) -> list[str] | None:
    """Config names declared in ``root/README.md``'s YAML header (``None`` without a card)."""
    import yaml

    card = path(root, CARD)
    if not os.path.exists(card):
        return None
    with open(card, encoding="utf-8") as fh:
        text = fh.read()
    if not text.startswith("---"):
        return []
    header = text.split("---", 2)[1]
    data = yaml.safe_load(header) or {}
    return [c["config_name"] for c in data.get("configs", []) if isinstance(c, dict) and "config_name" in c]


# ---------------------------------------------------------------------------------------------------
# manifest and fingerprints
# ---------------------------------------------------------------------------------------------------


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(obj) -> str:
    """SHA-256 (first 16 hex digits) of an object's canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]


def data_fingerprint(files: Mapping[str, Mapping[str, object]]) -> str:
    """The dataset fingerprint: a hash over every ``data/`` file's path and SHA-256.

    The same number comes out of a manifest and out of hashing the files themselves, so a folder can be
    checked against its manifest and a run can record which data it read.
    """
    return fingerprint({k: v["sha256"] for k, v in sorted(files.items()) if k.startswith(f"{DATA_DIR}/")})


def read_json(file: str) -> dict | None:
    """A JSON object from ``file``, ``None`` when the file is missing; a clear error when it is corrupt."""
    if not os.path.exists(file):
        return None
    try:
        with open(file, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"{file} is not valid JSON ({exc}); restore it or rebuild the folder") from None
    if not isinstance(data, dict):
        raise BenchmarkError(f"{file} is not a medfm_hf manifest (not a JSON object)")
    return data


def read_manifest(root: str) -> dict | None:
    """The public manifest of a build folder (``None`` if there is none)."""
    return read_json(path(root, MANIFEST))


def read_build_state(root: str) -> dict | None:
    """The private build state ``.medfm/build.json`` (``None`` if there is none)."""
    return read_json(path(root, BUILD_STATE))


def verify_folder(root: str, *, configs: Iterable[str] | None = None) -> list[str]:
    """Check every file listed in ``root``'s manifest (size and SHA-256); returns one line per problem.

    ``configs`` restricts the check to those configs' data files (plus nothing else). An empty list means
    the folder is intact. A folder without a manifest, or whose build did not finish, is a problem too.
    """
    from medfm_hf.io import sha256_file

    problems: list[str] = []
    manifest = read_manifest(root)
    if manifest is None:
        state = read_build_state(root)
        if state is not None and not state.get("complete"):
            return [f"{root}: the build did not finish ({MANIFEST} missing); rerun the same build command to "
                    "complete it"]
        return [f"{root}: no {MANIFEST}; it was not built by this medfm_hf version (rebuild it to get one)"]
    files = manifest.get("files", {})
    wanted = None if configs is None else {f"{DATA_DIR}/{c}/" for c in configs}
    for rel, info in sorted(files.items()):
        if wanted is not None and not any(rel.startswith(w) for w in wanted):
            continue
        full = path(root, rel)
        if not os.path.exists(full):
            problems.append(f"{rel}: missing")
            continue
        size = os.path.getsize(full)
        if size != info.get("size"):
            problems.append(f"{rel}: size {size} bytes, the manifest says {info.get('size')} (truncated or changed)")
            continue
        if sha256_file(full) != info.get("sha256"):
            problems.append(f"{rel}: content differs from the manifest (SHA-256 mismatch: corrupt or edited)")
    if configs is None:
        for cfg in configs_on_disk(root):
            for f in sorted(os.listdir(path(root, f"{DATA_DIR}/{cfg}"))):
                rel = f"{DATA_DIR}/{cfg}/{f}"
                if f.endswith(".parquet") and rel not in files:
                    problems.append(f"{rel}: not in the manifest (left from another build? `load_dataset` would "
                                    "read it as part of the config)")
    return problems
