"""``mri_ghosting`` keeps the parent -- its texture and noise -- at full strength (issue 12).

The earlier model multiplied every N-th phase-encode line of the clean image by a pure phase
:math:`e^{i\\phi}`; by Parseval the replicas then took their energy from the parent, whose amplitude
fell to :math:`|1 + (e^{i\\phi} - 1)/N|` (zero for N = 2 at the top of the range): the high-pass energy
inside the body fell by 30-60 % at the calibrated levels. The periodic fluctuation model keeps the
time-averaged object as the parent; these checks fail on the earlier model.
"""

from __future__ import annotations

import numpy as np
import pytest

from medfm_hf.perturbations import get_perturbation
from medfm_hf.perturbations.audit import LIMITS, side_effects

N = 128


def _noisy_body(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniform disc with white noise on a black background; the disc (diameter < FOV/3) is the FOV."""
    yy, xx = np.mgrid[:N, :N]
    body = (yy - N / 2) ** 2 + (xx - N / 2) ** 2 <= 19**2
    rng = np.random.default_rng(100 + seed)
    x = np.where(body, 0.5 + 0.05 * rng.standard_normal((N, N)), 0.0)
    return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8), body


@pytest.mark.parametrize("seed", range(6))
def test_noise_inside_the_body_is_kept_at_the_ceiling(seed):
    p = get_perturbation("mri_ghosting")
    img, body = _noisy_body(seed)
    out = p.apply(img, p.max_strength, np.random.default_rng(seed))[0]
    m = side_effects(img, out, body, 255)
    # the replicas land outside the disc: inside it the parent alone, with all its noise
    assert m["noise_ratio"] == pytest.approx(1.0, abs=0.05)
    assert abs(out[body].astype(float).mean() - img[body].astype(float).mean()) < 1.0
    assert out[~body].astype(float).mean() > 5.0  # and the ghosts are there


def test_demo_mri_noise_energy_within_the_limit_at_the_ceiling():
    from medfm_hf.sources.demo import load_demo

    p = get_perturbation("mri_ghosting")
    for rec in load_demo(split="test", modalities=["mri"]):
        out = p.apply(rec.image, p.max_strength, np.random.default_rng(0))[0]
        m = side_effects(rec.image, out, rec.fov, 255)
        assert m["noise_ratio"] >= LIMITS["smoothing"], (rec.image_id, m)
        assert m["new_saturated"] <= LIMITS["saturated"], (rec.image_id, m)
