"""The task-agnostic evaluation loop: plan, shard over Accelerate processes, resume, merge.

The batches of an :class:`~medfm_hf.evaluation.plan.EvalPlan` are dealt round-robin to the processes. Each
finished batch is written to ``<output>/.medfm/parts/<batch>.parquet`` atomically, with the run key and the
dataset and checkpoint fingerprints in the file's metadata; a rerun skips a batch whose part carries the
same run key, so an interrupted run resumes with no duplicates and never reuses a part of another run. The
main process then merges the parts and writes the result tables (:mod:`medfm_hf.evaluation.results`).

The task module (``TASK_MODULES``) plans the batches, builds the model and runs a batch; the runner knows no
task in particular.
"""

from __future__ import annotations

import glob
import importlib
import json
import logging
import os

from medfm_hf.benchmark import layout
from medfm_hf.evaluation.plan import PARTS, STATE, EvalPlan, EvaluationError, make_plan, with_batches
from medfm_hf.evaluation.results import PART_KEY, part_run_key, write_results
from medfm_hf.io import atomic_write_parquet, atomic_write_text

logger = logging.getLogger(__name__)

TASK_MODULES = {"segmentation": "medfm_hf.evaluation.segmentation", "vqa": "medfm_hf.tasks.evaluation",
                "caption": "medfm_hf.tasks.evaluation", "grounding": "medfm_hf.tasks.evaluation"}


def task_module(task: str):
    if task not in TASK_MODULES:
        raise EvaluationError(f"unknown task {task!r}; available: {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[task])


def plan_run(args, *, reader=None) -> tuple[EvalPlan, object]:
    """Validate the arguments and plan every batch (nothing is written); returns ``(plan, reader)``."""
    plan, reader = make_plan(args, reader=reader)
    return with_batches(plan, task_module(plan.task).plan_batches(reader, plan)), reader


def make_accelerator(mixed_precision: str = "no"):
    """An :class:`accelerate.Accelerator` that also shards on CPU-only machines.

    Without CUDA the accelerator is created with ``cpu=True``: that is what makes Accelerate start a gloo
    process group when ``accelerate launch`` runs several CPU processes (otherwise every process believes it
    is alone). Mixed precision is honoured on GPU only.
    """
    import torch
    from accelerate import Accelerator

    if not torch.cuda.is_available():
        if mixed_precision not in ("no", None):
            logger.warning("mixed precision %s ignored: no GPU", mixed_precision)
        return Accelerator(cpu=True, mixed_precision="no")
    return Accelerator(mixed_precision=mixed_precision)


def _owned_outputs(plan: EvalPlan) -> list[str]:
    """Files a previous run in ``plan.output`` wrote (what ``--overwrite`` may delete)."""
    out = plan.output
    files = glob.glob(os.path.join(out, *PARTS.split("/"), "*.parquet"))
    files += glob.glob(os.path.join(out, layout.STATE_DIR, "rank*.json"))
    files.append(os.path.join(out, *STATE.split("/")))
    run = layout.read_json(os.path.join(out, "run.json")) if os.path.exists(os.path.join(out, "run.json")) else None
    models = {plan.model} | ({run.get("model", {}).get("name")} if run else set())
    tasks = {"", f"_{plan.task}"} | ({f"_{run.get('task')}"} if run and run.get("task") else set())
    for m in filter(None, models):
        files += [os.path.join(out, f"{m}{t}{suffix}") for t in tasks for suffix in
                  ("_results.parquet", "_results.csv", "_SUMMARY.csv", "_STATS_BY_LEVEL.csv")]
    files += [os.path.join(out, "run.json"), os.path.join(out, "README.md")]
    return [f for f in files if os.path.isfile(f)]


def _prepare_output(plan: EvalPlan) -> None:
    """Main process: start afresh under ``--overwrite`` (deleting only a previous run's files), record the run."""
    from medfm_hf.evaluation.plan import previous_run

    old = previous_run(plan.output)
    if old is not None and old.get("run_key") != plan.run_key:
        files = _owned_outputs(plan)
        for f in files:
            os.remove(f)
        logger.warning("--overwrite: removed %d files of the previous run in %s", len(files), plan.output)
    os.makedirs(os.path.join(plan.output, *PARTS.split("/")), exist_ok=True)
    if old is None or old.get("run_key") != plan.run_key:
        atomic_write_text(os.path.join(plan.output, *STATE.split("/")), json.dumps(plan.state(), indent=2,
                                                                                   sort_keys=True))


def run_plan(plan: EvalPlan, reader, accelerator=None) -> dict | None:
    """Run every batch of ``plan`` not done yet; returns the results (main process) or ``None``."""
    from tqdm.auto import tqdm

    task = task_module(plan.task)
    accelerator = accelerator or make_accelerator(plan.mixed_precision)
    model = task.load_model(plan, accelerator.device)
    if accelerator.is_main_process:
        _prepare_output(plan)
    accelerator.wait_for_everyone()

    meta = {PART_KEY: plan.run_key, "medfm_dataset_fingerprint": str(plan.fingerprints["dataset"]),
            "medfm_checkpoint_fingerprint": str(plan.fingerprints["checkpoint"])}
    mine = list(plan.batches[accelerator.process_index :: accelerator.num_processes])
    todo = [b for b in mine if part_run_key(plan.part_path(b.key)) != plan.run_key]
    bar = tqdm(total=len(todo), desc=f"evaluating {plan.model} (rank 0 of {accelerator.num_processes})",
               unit="batch", disable=plan.no_progress or not accelerator.is_local_main_process)
    processed = []
    for b in todo:
        df = task.run_batch(model, reader, b, plan, accelerator.device, accelerator.autocast)
        atomic_write_parquet(df, plan.part_path(b.key), metadata=meta)
        processed.append(b.key)
        bar.update()
    bar.close()
    atomic_write_text(os.path.join(plan.output, layout.STATE_DIR, f"rank{accelerator.process_index}.json"),
                      json.dumps({"rank": accelerator.process_index, "world": accelerator.num_processes,
                                  "assigned": [b.key for b in mine], "processed": processed}))
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    return getattr(task, "write_results", write_results)(plan, reader, accelerator, model)


def evaluate(args, accelerator=None) -> dict | None:
    """Validate ``args``, plan, run and write the results (see :func:`run_plan`)."""
    plan, reader = plan_run(args)
    return run_plan(plan, reader, accelerator=accelerator)
