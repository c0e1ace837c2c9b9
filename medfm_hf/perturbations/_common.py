"""Helpers shared by the modality families (not a family: registers nothing)."""

from __future__ import annotations

import cv2
import numpy as np


def highpass_energy(x: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean squared high-pass (image minus its Gaussian blur, sigma 1 px) of a float ``(H, W)`` image."""
    x = x.astype(np.float32)
    hp = x - cv2.GaussianBlur(x, (0, 0), 1.0)
    return float((hp[region] if region is not None else hp).astype(np.float64).var())


def keep_quantum_noise(clean: np.ndarray, out: np.ndarray, z: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Add white noise ``a z`` to ``out`` so its high-pass energy is back at ``clean``'s (never above).

    Used where an automatic exposure / brightness control keeps the detected dose constant while a
    veil (scatter, glare, haze) takes part of it: the quantum noise of the detected photons stays at the
    clean image's level, though the signal's contrast falls. ``z`` is a standard normal field drawn
    before the strength is used; float ``(H, W)`` images in [0, 1].
    """
    e_clean = highpass_energy(clean, region)
    e_out = highpass_energy(out, region)
    e_z = highpass_energy(z, region)
    if e_z <= 0 or e_out >= e_clean:
        return out
    return out + np.sqrt((e_clean - e_out) / e_z) * z


def shot_noise(clean: np.ndarray, out: np.ndarray, gain: np.ndarray, z: np.ndarray,
               region: np.ndarray | None = None) -> np.ndarray:
    """Add the relative shot noise of an exposure scaled per pixel by ``gain`` (<= 1) to ``out``.

    Poisson noise has a variance proportional to the signal, ``k x``; with ``gain`` times fewer photons
    the signal scales by ``gain`` but the noise only by ``sqrt(gain)``. ``out`` holds the clean noise
    scaled by ``gain``; white noise of variance ``k x (gain - gain^2)`` tops it up, with ``k`` estimated
    from the clean image's high-pass energy over its mean in ``region`` (an upper bound: fine texture
    counts as noise). Black (no signal) gets no noise.
    """
    e_clean = highpass_energy(clean, region)
    e_z = highpass_energy(z, region)
    m = float(clean[region].mean() if region is not None else clean.mean())
    if e_z <= 0 or m <= 0:
        return out
    g = np.clip(gain, 0.0, 1.0)
    k = e_clean / m
    return out + np.sqrt(k * np.clip(clean, 0.0, None) * (g - g * g) / e_z) * z


def disc_geometry(field: np.ndarray) -> tuple[float, float, float]:
    """Centre (row, column) and equivalent radius in pixels of a (soft) circular field of view: an endoscope's
    or fundus camera's aperture (the whole frame when less than 16 pixels are inside)."""
    m = field > 0.5
    if m.sum() < 16:
        m = np.ones_like(m)
    rows, cols = np.nonzero(m)
    return float(rows.mean()), float(cols.mean()), float(np.sqrt(m.sum() / np.pi))
