"""Evaluate a segmenter on a medfm-robust benchmark: clean, perturbed and attacked, sharded by Accelerate.

    accelerate launch evaluate.py --model medsam --checkpoint medsam_vit_b.pth \
        --dataset medfm-robust --attacks fgsm,pgd --output results/medsam
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml evaluate.py ...
    accelerate launch evaluate.py --task vqa --model medgemma --checkpoint google/medgemma-4b-it \
        --dataset medfm-robust --output results/medgemma-vqa      # also caption, grounding (docs/vlm_evaluation.md)

The arguments are :class:`medfm_hf.evaluation.EvalArguments` (``python evaluate.py --help``).

This file is named like the ``evaluate`` library. Run from the repository root, Python puts this folder first
on ``sys.path``, so ``import evaluate`` would find this script instead of the library. Two guards prevent
that: when run as a script it removes its own folder from ``sys.path`` before importing anything, and when
*imported* as ``evaluate`` it replaces itself in ``sys.modules`` by the real library.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _not_here(p: str) -> bool:
    return os.path.abspath(p or os.getcwd()) != _HERE


if __name__ != "__main__":
    # Imported as `evaluate` (e.g. `import evaluate` from the repository root): become the real library.
    import importlib

    _saved_path = list(sys.path)
    _me = sys.modules.pop(__name__)
    sys.path[:] = [p for p in sys.path if _not_here(p)]
    try:
        _real = importlib.import_module("evaluate")
    finally:
        sys.path[:] = _saved_path
    sys.modules[__name__] = _real
    globals().update({k: v for k, v in vars(_real).items() if k not in ("__name__", "__file__", "__spec__")})
else:
    # Run as a script: use the medfm_hf of this checkout (imported while this folder is still on the path),
    # then drop the folder so that `import evaluate` finds the library.
    import medfm_hf  # noqa: F401

    sys.path[:] = [p for p in sys.path if _not_here(p)]


def main(argv: list[str] | None = None) -> int:
    from medfm_hf.errors import USER_ERRORS, report_error
    from medfm_hf.evaluation.args import parse_eval_args
    from medfm_hf.evaluation.report import print_summary
    from medfm_hf.evaluation.runner import evaluate

    args = parse_eval_args(argv)
    try:
        res = evaluate(args)
    except USER_ERRORS as exc:  # one line, rank 0 only, no traceback (every rank fails alike: no hang)
        return report_error("evaluate.py", exc)
    if res is not None:
        print_summary(res["summary"])
        print(f"results in {args.output}")
    return 0


if __name__ == "__main__":
    import logging

    from medfm_hf.env import is_main_rank

    logging.basicConfig(level=logging.INFO if is_main_rank() else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
