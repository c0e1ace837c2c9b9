"""The typed evaluation plan: what a run does, built once from the arguments, validated, handed to the loop.

:func:`make_plan` is the one place where evaluation arguments are checked. Everything that can be wrong
(model, checkpoint, levels, attacks, step rule, model options, output folder, dataset completeness and
integrity, a previous run in the output folder) raises :class:`EvaluationError` with one line, before a
model is built or a batch runs. The resulting :class:`EvalPlan` is frozen: the runner, the task and the
result writer read it and never see the argument object.

A plan is task-agnostic: ``task`` names the task (``segmentation`` for now) whose module plans the batches
(:class:`Batch` of :class:`WorkItem`) and runs them; the plan's configs x levels x attacks, sharding and
parts are the same for every task.

Runs are keyed by what they read: the plan's :attr:`EvalPlan.run_key` hashes the settings together with the
dataset fingerprint (the build manifest's) and the checkpoint fingerprint (SHA-256 of its files, or the Hub
revision). A rerun into the same output resumes only when the key is the same.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from medfm_hf.benchmark import layout
from medfm_hf.benchmark.layout import BenchmarkError

STATE = f"{layout.STATE_DIR}/eval_settings.json"
PARTS = f"{layout.STATE_DIR}/parts"
TASKS = ("segmentation", "vqa", "caption", "grounding")
MIXED_PRECISION = ("no", "fp16", "bf16")

StepRule = Literal["standard", "reference"]


class EvaluationError(BenchmarkError):
    """The evaluation cannot start: the message says what was wrong and what to do."""


@dataclass(frozen=True)
class WorkItem:
    """One sample of one condition: ``kind`` clean / perturbation / attack, ``name``, ``level``."""

    kind: str
    name: str
    level: int
    config: str
    row: int
    image_id: str


@dataclass(frozen=True)
class Batch:
    """A unit of work and of resumption: its results are one part file named by ``key``."""

    key: str
    items: tuple[WorkItem, ...]


@dataclass(frozen=True)
class EvalPlan:
    """Everything a run does, validated (see the module docstring)."""

    task: str
    model: str
    checkpoint: str | None
    model_kwargs: dict[str, Any]
    dataset: str
    dataset_path: str
    configs: tuple[str, ...]
    levels: tuple[int, ...]
    attacks: tuple[str, ...]
    step_rule: str
    seed: int
    batch_size: int
    limit: int | None
    output: str
    fingerprints: dict[str, Any]
    batches: tuple[Batch, ...] = ()
    overwrite: bool = False
    allow_incomplete: bool = False
    mixed_precision: str = "no"
    no_progress: bool = False
    push_to_hub: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None  # VLM tasks: response cache ("auto", "none" or a file); not part of the run key

    def settings(self) -> dict[str, Any]:
        """What determines the numbers (the output folder, progress and upload do not)."""
        return {"task": self.task, "model": self.model, "checkpoint": self.checkpoint,
                "model_kwargs": self.model_kwargs, "configs": list(self.configs), "levels": list(self.levels),
                "attacks": list(self.attacks), "step_rule": self.step_rule, "seed": self.seed,
                "batch_size": self.batch_size, "limit": self.limit, **self.extra}

    @property
    def run_key(self) -> str:
        key = {"settings": self.settings(), "dataset": self.fingerprints["dataset"],
               "checkpoint": self.fingerprints["checkpoint"]}
        if self.fingerprints.get("finetuned"):  # the fine-tuned weights' content, not just their folder's name
            key["finetuned"] = self.fingerprints["finetuned"]
        return layout.fingerprint(key)

    def state(self) -> dict[str, Any]:
        """The record kept in ``.medfm/eval_settings.json`` (and compared by a rerun)."""
        return {"run_key": self.run_key, "settings": self.settings(), "fingerprints": self.fingerprints}

    def part_path(self, key: str) -> str:
        return os.path.join(self.output, *PARTS.split("/"), f"{key}.parquet")


# ------------------------------------------------------------------------------------------------------
# fingerprints
# ------------------------------------------------------------------------------------------------------


def checkpoint_fingerprint(checkpoint: str | None) -> str:
    """``sha256:<hex>`` of a checkpoint file (or of a folder's files), ``hub:<id>@<revision>``, or ``none``."""
    from medfm_hf.io import sha256_file

    if checkpoint is None:
        return "none"
    if os.path.isfile(checkpoint):
        return "sha256:" + sha256_file(checkpoint)
    if os.path.isdir(checkpoint):
        files = {}
        for dirpath, dirnames, filenames in os.walk(checkpoint):
            dirnames.sort()
            for f in sorted(filenames):
                full = os.path.join(dirpath, f)
                files[os.path.relpath(full, checkpoint)] = sha256_file(full)
        return "sha256-tree:" + layout.fingerprint(files)
    revision = "unknown"
    try:
        from huggingface_hub import HfApi

        revision = HfApi().model_info(checkpoint).sha or "unknown"
    except Exception:  # noqa: BLE001 - offline or private: the id alone is recorded
        pass
    return f"hub:{checkpoint}@{revision}"


# ------------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------------


def _split_list(text: str | list | tuple | None) -> list[str]:
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return [str(t).strip() for t in text if str(t).strip()]
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _check_checkpoint(path: str | None) -> None:
    if path is None:
        return
    looks_local = os.path.isabs(path) or path.startswith(".") or path.endswith((".pth", ".pt", ".bin",
                                                                                 ".safetensors"))
    if looks_local and not os.path.exists(path):
        raise EvaluationError(f"checkpoint {path!r} does not exist; pass a local file/folder or a Hub model id")
    if not looks_local and not os.path.exists(path) and path.count("/") != 1:
        raise EvaluationError(f"checkpoint {path!r} is neither an existing file/folder nor a Hub id (ORG/NAME)")


def _model_kwargs(text: str | dict, model: str) -> dict[str, Any]:
    from medfm_hf.models.registry import segmenter_spec

    if isinstance(text, dict):
        kwargs = dict(text)
    else:
        try:
            kwargs = json.loads(text or "{}")
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"--model_kwargs is not valid JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise EvaluationError(f"--model_kwargs must be a JSON object like '{{\"size\": \"tiny\"}}', got {text!r}")
    sig = inspect.signature(segmenter_spec(model).factory)
    params = sig.parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        known = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and n not in ("checkpoint", "device")]
        bad = sorted(k for k in kwargs if k not in known)
        if bad:
            raise EvaluationError(f"--model_kwargs: model {model!r} takes no option {', '.join(map(repr, bad))}; "
                                  f"its options are: {', '.join(known) or '(none)'}")
    return kwargs


def _check_output(out: str) -> None:
    from medfm_hf.io import folder_problem

    problem = folder_problem(out)
    if problem:
        raise EvaluationError(f"--output {problem}")


def previous_run(out: str) -> dict | None:
    """The state of a run already in ``out`` (``None`` if there is none)."""
    try:
        return layout.read_json(os.path.join(out, *STATE.split("/")))
    except BenchmarkError as exc:
        raise EvaluationError(f"{exc}; pass --overwrite to start afresh") from None


def _check_previous(plan: EvalPlan) -> None:
    old = previous_run(plan.output)
    if old is None or plan.overwrite or old.get("run_key") == plan.run_key:
        return
    new = plan.state()
    old_settings, old_fp = old.get("settings", {}), old.get("fingerprints", {})
    diffs = [f"{k}: {old_settings.get(k)!r} -> {v!r}" for k, v in new["settings"].items() if old_settings.get(k) != v]
    for k in ("dataset", "checkpoint", "finetuned"):
        if old_fp.get(k) != new["fingerprints"].get(k):
            diffs.append(f"{k} fingerprint {old_fp.get(k)} -> {new['fingerprints'][k]}")
    raise EvaluationError(f"{plan.output} holds a run with other settings or inputs ({'; '.join(diffs) or 'older format'}"
                          "); pass --overwrite to start afresh or choose another --output")


def make_plan(args, *, reader=None) -> tuple[EvalPlan, Any]:
    """Validate ``args`` (an :class:`~medfm_hf.evaluation.args.EvalArguments`) and plan the run.

    The task module adds the batches (:func:`with_batches`). Returns the plan and the opened :class:`~medfm_hf.benchmark.reader.BenchmarkReader`. Raises
    :class:`EvaluationError` (one line) for anything wrong; nothing is written.
    """
    from medfm_hf.attacks import METHODS, STEP_RULES
    from medfm_hf.benchmark.reader import BenchmarkReader
    from medfm_hf.models import list_segmenters

    task = getattr(args, "task", "segmentation") or "segmentation"
    if task not in TASKS:
        raise EvaluationError(f"unknown --task {task!r}; choose from {', '.join(TASKS)}")
    vlm = task != "segmentation"
    if vlm:  # the VLM tasks check their own model, options and checkpoint (medfm_hf.tasks.arguments)
        from medfm_hf.tasks.arguments import check_vlm_arguments

        try:
            vlm_kwargs, vlm_fingerprint, vlm_checkpoint = check_vlm_arguments(args)
        except ValueError as exc:
            raise EvaluationError(str(exc)) from None
    elif args.model not in list_segmenters():
        raise EvaluationError(f"unknown model {args.model!r}; available: {', '.join(list_segmenters())}")
    else:
        _check_checkpoint(args.checkpoint)
    if not isinstance(args.batch_size, int) or args.batch_size < 1:
        raise EvaluationError("--batch_size must be >= 1")
    if args.limit is not None and args.limit < 1:
        raise EvaluationError("--limit must be >= 1")
    try:
        levels = tuple(layout.parse_levels(args.levels))
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None
    attacks = tuple(_split_list(args.attacks))
    bad = [a for a in attacks if a not in METHODS]
    if bad:
        raise EvaluationError(f"unknown attacks {bad}; choose from {', '.join(METHODS)}")
    if args.step_rule not in STEP_RULES:
        raise EvaluationError(f"--step_rule must be one of {', '.join(STEP_RULES)}, got {args.step_rule!r}")
    if args.mixed_precision not in MIXED_PRECISION:
        raise EvaluationError(f"--mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                              f"got {args.mixed_precision!r}")
    push = getattr(args, "push_to_hub", None)
    if push and push.count("/") != 1:
        raise EvaluationError(f"--push_to_hub must look like ORG/NAME, got {push!r}")
    kwargs = vlm_kwargs if vlm else _model_kwargs(args.model_kwargs, args.model)
    _check_output(args.output)
    try:
        reader = reader or BenchmarkReader(args.dataset)
        if not reader.complete and not getattr(args, "allow_incomplete", False):
            raise EvaluationError(f"{args.dataset} is not a complete build: {reader.incomplete_reason}; evaluating it "
                                  "would silently cover a subset. Pass --allow_incomplete to evaluate what is there")
        configs = tuple(reader.select(args.configs, list(levels)))
        reader.check([layout.CLEAN, *configs])
    except EvaluationError:
        raise
    except BenchmarkError as exc:
        raise EvaluationError(str(exc)) from None
    fingerprints = {"dataset": reader.fingerprint, "dataset_revision": reader.revision,
                    "dataset_complete": reader.complete,
                    "checkpoint": (vlm_fingerprint or checkpoint_fingerprint(vlm_checkpoint)) if vlm
                    else checkpoint_fingerprint(args.checkpoint)}
    known = {"model", "dataset", "output", "checkpoint", "configs", "attacks", "levels", "batch_size", "limit",
             "seed", "step_rule", "model_kwargs", "mixed_precision", "push_to_hub", "no_progress", "overwrite",
             "allow_incomplete", "task", "max_new_tokens", "vlm_cache"}
    extra = {k: v for k, v in asdict(args).items() if k not in known}  # fields added by other features
    if extra.get("finetuned"):  # a finetune.py output folder: its files' content keys the run
        if not os.path.isdir(extra["finetuned"]):
            raise EvaluationError(f"--finetuned {extra['finetuned']!r} is not a folder; pass the output folder of "
                                  "finetune.py")
        fingerprints["finetuned"] = checkpoint_fingerprint(extra["finetuned"])
    if vlm:  # what changes a VLM answer; the cache location does not
        extra["max_new_tokens"] = getattr(args, "max_new_tokens", None)
    plan = EvalPlan(
        task=task, model=args.model, checkpoint=args.checkpoint, model_kwargs=kwargs,
        dataset=args.dataset, dataset_path=reader.path, configs=configs, levels=levels, attacks=attacks,
        step_rule=args.step_rule, seed=int(args.seed), batch_size=args.batch_size, limit=args.limit,
        output=args.output, fingerprints=fingerprints, overwrite=bool(getattr(args, "overwrite", False)),
        allow_incomplete=bool(getattr(args, "allow_incomplete", False)), mixed_precision=args.mixed_precision,
        no_progress=bool(args.no_progress), push_to_hub=push, extra=extra,
        cache=getattr(args, "vlm_cache", "auto") if vlm else None,
    )
    _check_previous(plan)
    return plan, reader


def with_batches(plan: EvalPlan, batches) -> EvalPlan:
    """The plan with its batches (planned by the task module); an empty plan is an error."""
    from dataclasses import replace

    batches = tuple(batches)
    if not batches:
        raise EvaluationError("the selection is empty: no clean test image with a mask was found"
                              if plan.task == "segmentation" else
                              f"the selection is empty: no clean test row has the fields of --task {plan.task}")
    return replace(plan, batches=batches)
