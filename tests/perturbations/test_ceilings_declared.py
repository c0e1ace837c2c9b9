"""Physical ceilings of the angiography, CT, dermoscopy, OCT, pathology, ultrasound and X-ray artifacts.

Issue 12, item 4: every perturbation declares, in its registry metadata and in a docstring line beginning
``Ceiling:``, the strongest physically plausible strength and why. Here: the ceiling is declared, lies in
the strength range, and the docstring's ``Ceiling:`` paragraph states the same value as the metadata.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from medfm_hf.perturbations import get_perturbation

NAMES = [
    "angio_haze", "angio_motion",
    "ct_beam_hardening", "ct_metal", "ct_photon_starvation", "ct_ring",
    "derm_hair", "derm_reflection", "derm_vignette",
    "oct_blink", "oct_defocus", "oct_motion", "oct_shadow", "oct_speckle",
    "path_bubbles", "path_fold", "path_stain",
    "us_gain", "us_reverberation", "us_shadowing",
    "xray_exposure", "xray_grid", "xray_scatter",
]


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
    assert _states(p.ceiling_note, p.ceiling), f"{name}: the ceiling note does not state {p.ceiling:g}"


def test_the_docstring_check_can_fail():
    """The paragraph parser and the number match reject what they should."""
    with pytest.raises(AssertionError):
        _ceiling_paragraph("Model: x.\n\n    No ceiling here.\n")
    assert _states("Ceiling: 5 e-folds (0.7 % transmission)", 5.0)
    assert not _states("Ceiling: 0.5 of the range, 15 px", 5.0)
    assert _states("Ceiling: s = 0.5 -- a spread of 7.5 %", 0.5)
