"""Perturbation catalog: registry plus one module per family (base and one per modality).

Importing this package imports every family module, which registers its perturbations.
"""

from __future__ import annotations

import importlib
import pkgutil

from medfm_hf.perturbations.registry import (
    ALL,
    Perturbation,
    PerturbationError,
    get_perturbation,
    list_perturbations,
    register_perturbation,
)

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in ("registry",) and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["ALL", "Perturbation", "PerturbationError", "get_perturbation", "list_perturbations",
           "register_perturbation"]
