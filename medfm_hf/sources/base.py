"""Source registry and the bad-input report shared by every source adapter.

A source turns a raw dataset on disk into :class:`~medfm_hf.records.Record` objects. Bad inputs
(unreadable files, size mismatches, empty masks, ...) never crash a build halfway and are never dropped
silently: each is recorded in a :class:`SourceReport` with a reason, and the report is printed at the
end of the run.

Adding a source is one decorated function::

    @register_source("busi", layout="benign/ malignant/ normal/ with '<name> (k).png' + '_mask*.png'",
                     licence="CC BY 4.0", url_hint="Al-Dhabyani et al. 2020")
    def busi(path: str, *, seed: int = 0, report: SourceReport, **options) -> list[Record]: ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medfm_hf.records import Record

logger = logging.getLogger(__name__)


@dataclass
class Issue:
    """One problem found in the raw data."""

    item: str  # file or stem
    reason: str
    action: str  # "skipped" or "kept (flagged)"


@dataclass
class SourceReport:
    """Everything a source skipped or flagged, with reasons."""

    source: str
    issues: list[Issue] = field(default_factory=list)

    def skip(self, item: str, reason: str) -> None:
        self.issues.append(Issue(str(item), reason, "skipped"))
        logger.warning("%s: skipped %s: %s", self.source, item, reason)

    def flag(self, item: str, reason: str) -> None:
        self.issues.append(Issue(str(item), reason, "kept (flagged)"))
        logger.info("%s: flagged %s: %s", self.source, item, reason)

    @property
    def skipped(self) -> list[Issue]:
        return [i for i in self.issues if i.action == "skipped"]

    @property
    def flagged(self) -> list[Issue]:
        return [i for i in self.issues if i.action != "skipped"]

    def format(self) -> str:
        """A human-readable table (empty string when there is nothing to report)."""
        if not self.issues:
            return ""
        lines = [f"{self.source}: {len(self.skipped)} skipped, {len(self.flagged)} flagged"]
        for i in self.issues:
            lines.append(f"  {i.action:15s} {i.item}: {i.reason}")
        return "\n".join(lines)


@dataclass(frozen=True)
class SourceSpec:
    name: str
    loader: Callable[..., list[Record]]
    layout: str
    licence: str
    reference: str
    needs_path: bool = True
    description: str = ""


_REGISTRY: dict[str, SourceSpec] = {}


def register_source(
    name: str, *, layout: str, licence: str, reference: str = "", needs_path: bool = True
) -> Callable[[Callable[..., list[Record]]], Callable[..., list[Record]]]:
    """Decorator: register ``fn(path, *, seed, report, **options) -> list[Record]`` under ``name``."""

    def deco(fn: Callable[..., list[Record]]) -> Callable[..., list[Record]]:
        if name in _REGISTRY:
            raise ValueError(f"source {name!r} registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = SourceSpec(name, fn, layout, licence, reference, needs_path, doc[0] if doc else "")
        return fn

    return deco


def _ensure_loaded() -> None:
    # Importing the package imports every adapter module, which registers itself.
    import medfm_hf.sources  # noqa: F401


def list_sources() -> list[SourceSpec]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_source(name: str) -> SourceSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown source {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def load_source(name: str, path: str | None = None, *, seed: int = 0, **options: Any) -> tuple[list[Record], SourceReport]:
    """Run one source adapter; returns its records and its bad-input report."""
    spec = get_source(name)
    if spec.needs_path and not path:
        raise ValueError(f"source {name!r} needs a path: --sources {name}=PATH (expected layout: {spec.layout})")
    report = SourceReport(name)
    records = spec.loader(path, seed=seed, report=report, **options)
    return records, report


_OPTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def parse_sources_arg(text: str) -> list[tuple[str, str | None, dict[str, str]]]:
    """Parse ``demo,folder=PATH:modality,busi=PATH`` into ``[(name, path, options), ...]``.

    Trailing ``:key=value`` parts after a path are that source's options
    (``ct_nifti=PATH:label=2:window=liver``, ``roco=PATH:modality=xray``); values cannot contain ``:`` or
    ``,``. For ``folder`` a trailing bare word is the modality (``folder=PATH:dermoscopy``).
    """
    out: list[tuple[str, str | None, dict[str, str]]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, rest = part.partition("=")
        name = name.strip()
        opts: dict[str, str] = {}
        path: str | None = rest or None
        while path and ":" in path:
            head, _, tail = path.rpartition(":")
            if _OPTION_RE.fullmatch(tail):
                key, _, value = tail.partition("=")
                opts.setdefault(key, value)
            elif name == "folder" and "modality" not in opts and tail.isalpha():
                opts["modality"] = tail
            else:
                break
            path = head
        out.append((name, path or None, opts))
    if not out:
        raise ValueError("no sources given; e.g. --sources demo or --sources folder=PATH:dermoscopy")
    return out
