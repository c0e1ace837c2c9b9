"""Physical ceilings of every registered perturbation.

Issue 12, item 4: every perturbation declares, in its registry metadata and in a docstring line beginning
``Ceiling:``, the strongest physically plausible strength and why. Here: the ceiling is declared, lies in
the strength range, and the docstring's ``Ceiling:`` paragraph states the same value as the metadata.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from medfm_hf.perturbations import get_perturbation, list_perturbations

NAMES = list_perturbations()  # every registered perturbation


def _ceiling_paragraph(doc: str) -> str:
    """The docstring paragraph that starts with a line ``Ceiling: ...`` (up to the next blank line)."""
    lines = [ln.strip() for ln in doc.splitlines()]
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Ceiling:")]
    assert len(starts) == 1, f"expected one line beginning 'Ceiling:', found {len(starts)}"
    out = []
    for ln in lines[starts[0]:]:
        if not ln:
            break
        out.append(ln)
    return " ".join(out)


def _states(text: str, value: float) -> bool:
    """Whether ``text`` names ``value`` as a number (5 matches '5' and '5.0', not '0.5' or '15')."""
    numbers = [float(m) for m in re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?![\d.])", text)]
    return any(np.isclose(n, value) for n in numbers)


@pytest.mark.parametrize("name", NAMES)
def test_ceiling_is_declared_and_stated_in_the_docstring(name):
    p = get_perturbation(name)
    assert p.ceiling is not None and p.ceiling_note, f"{name}: no physical ceiling declared"
    lo, hi = p.strength_range
    assert lo < p.ceiling <= hi
    assert p.max_strength == p.ceiling
    paragraph = _ceiling_paragraph(p.fn.__doc__ or "")
    assert _states(paragraph, p.ceiling), f"{name}: the docstring's Ceiling line does not state {p.ceiling:g}"
    assert len(p.ceiling_note) > 30, f"{name}: the ceiling note must give the physical reason"


def test_the_docstring_check_can_fail():
    """The paragraph parser and the number match reject what they should."""
    with pytest.raises(AssertionError):
        _ceiling_paragraph("Model: x.\n\n    No ceiling here.\n")
    assert _states("Ceiling: 5 e-folds (0.7 % transmission)", 5.0)
    assert not _states("Ceiling: 0.5 of the range, 15 px", 5.0)
    assert _states("Ceiling: s = 0.5 -- a spread of 7.5 %", 0.5)


def test_all_48_are_covered():
    assert len(NAMES) == 48


def test_the_registry_refuses_a_perturbation_without_a_ceiling(monkeypatch):
    from medfm_hf.perturbations import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with pytest.raises(ValueError, match="physical ceiling"):
        registry.register_perturbation("toy_no_ceiling", strength_range=(0.0, 1.0), description="toy")(
            lambda image, strength, rng: image)
    with pytest.raises(ValueError, match="ceiling_note"):
        registry.register_perturbation("toy_no_note", strength_range=(0.0, 1.0), description="toy", ceiling=1.0)(
            lambda image, strength, rng: image)
    with pytest.raises(ValueError, match="inside"):
        registry.register_perturbation("toy_above", strength_range=(0.0, 1.0), description="toy", ceiling=2.0,
                                       ceiling_note="toy")(lambda image, strength, rng: image)
