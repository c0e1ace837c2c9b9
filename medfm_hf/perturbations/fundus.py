"""Fundus-photography artifacts: media-opacity (cataract) haze and uneven illumination.

A fundus camera images the retina through the eye's optical media and a pupil of a few millimetres;
the image only covers a circular field of view (black outside). Both artifacts act inside that field.
Grey images are treated as one channel.

References
----------
* Peli E., Peli T. "Restoration of retinal images obtained through cataracts." IEEE TMI 8(4):401-406,
  1989.
* Shen Z. et al. "Modeling and enhancing low-quality retinal fundus images." IEEE TMI 40(3):996-1006,
  2021 (degradation model: illumination, blur and cataract-like haze).
* van den Berg T.J.T.P. et al. "Straylight effects with aging and lens extraction." Am J Ophthalmol
  144(3):358-363, 2007.
* Foracchia M., Grisan E., Ruggeri A. "Luminosity and contrast normalization in retinal images."
  Med Image Anal 9(3):179-190, 2005.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations._common import disc_geometry, keep_quantum_noise, shot_noise
from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float


def _channels(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x


def fundus_field(x: np.ndarray) -> np.ndarray:
    """Soft map in [0, 1] of the camera's circular field of view (where the image has signal)."""
    lum = ndi.gaussian_filter(x.mean(axis=2), 2.0)
    return np.clip((lum - 0.03) / 0.05, 0.0, 1.0)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / max(float(f.std()), 1e-12)


@register_perturbation(
    "fundus_haze",
    modalities=("fundus",),
    strength_range=(0.0, 6.0),
    description="media opacity (cataract): forward-scatter blur, veiling straylight and lens yellowing",
    ceiling=2.0, ceiling_note="opacity beta <= 0.86 (14 % of the retina's contrast left): denser cataracts are not photographed",
)
def fundus_haze(
    image: np.ndarray, strength: float, rng: np.random.Generator, occlusion: list | None = None
) -> np.ndarray:
    r"""Media-opacity (cataract) haze.

    **Physics.** An opaque or scattering crystalline lens (cataract) degrades the fundus image in three
    ways: light from the retina is scattered on its way out, blurring detail; the camera's own
    illumination is scattered back by the lens into the camera, adding a bright veil that lowers
    contrast (the dominant effect; Peli & Peli 1989, van den Berg et al. 2007); and the brunescent lens
    absorbs short wavelengths, yellowing the image. Shen et al. (2021) use this model to synthesise
    cataract images.

    **Model.** With the opacity :math:`\beta = 1 - e^{-s\,o(x)}`, where :math:`o(x) = 0.75 + 0.25\,\phi(x)`
    clipped to :math:`[0.4, 1]` (:math:`\phi` a unit smooth random field, the uneven cataract, from
    ``rng``),

    .. math:: I' = F\,\Big[(1 - \beta)\,\tau\,(I * g_{\sigma_s}) + \beta\, V\,\ell\Big] + (1 - F)\, I,

    where :math:`\sigma_s = 1.2\,s` px is the forward-scatter blur, :math:`\tau = (1, 1 - 0.05 s',
    1 - 0.15 s')` (:math:`s' = \min(s, 1)`) the lens transmission (less blue), :math:`V = (L * g_{wide})`
    the veil (the illuminated field blurred over 15 % of the side, times a level drawn in
    [0.8, 1]), :math:`\ell = (1, 0.98, 0.93)` a warm white and :math:`F` the field of view. Contrast falls as
    :math:`1-\beta`.
    The veil's light carries shot noise, so the noise level inside the field is kept at the clean
    image's (:func:`~medfm_hf.perturbations._common.keep_quantum_noise`): the levels come from lost
    contrast, not from a denoised flat veil. Opacity :math:`\beta` is reported as the occluder's opacity
    (``target_visible_fraction``).

    Ceiling: :math:`s = 2`, opacity :math:`\beta \le 1 - e^{-2} = 0.86` (at least 14 % of the retina's
    contrast left): denser cataracts are not photographed, they are operated on. The deep levels can be
    out of reach (reason ``ceiling``).

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Optical density :math:`s` of the opacity (natural-log units), ``[0, 6]``.
    rng : numpy.random.Generator
        Source of the opacity pattern and the veil level.

    Returns
    -------
    numpy.ndarray
        The hazy image, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    phi = _smooth_field(rng, (h, w), 0.15 * side)
    level = rng.uniform(0.8, 1.0)
    z = rng.standard_normal((h, w))
    fov = fundus_field(x)
    opacity = np.clip(0.75 + 0.25 * phi, 0.4, 1.0)
    beta = (1.0 - np.exp(-strength * opacity))[..., None]
    blurred = ndi.gaussian_filter(x, sigma=(1.2 * strength, 1.2 * strength, 0.0))
    veil = ndi.gaussian_filter(fov, 0.15 * side)
    veil = veil / max(float(veil.max()), 1e-9)
    sp = min(strength, 1.0)
    if x.shape[2] == 3:
        tau = np.array([1.0, 1.0 - 0.05 * sp, 1.0 - 0.15 * sp])
        tint = np.array([1.0, 0.98, 0.93])
    else:
        tau, tint = np.array([1.0 - 0.07 * sp]), np.array([0.92])
    hazy = (1 - beta) * tau * blurred + beta * (level * veil)[..., None] * tint
    inside = fov > 0.5
    if inside.sum() > 16:  # the veil's light carries its own shot noise: the noise level is kept
        hazy = np.stack([keep_quantum_noise(x[..., c], hazy[..., c], z, inside) for c in range(x.shape[2])], axis=2)
    f = fov[..., None]
    out = f * hazy + (1 - f) * x
    if occlusion is not None:
        occlusion.append(beta[..., 0] * fov)
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "fundus_illumination",
    modalities=("fundus",),
    strength_range=(0.0, 8.0),
    description="uneven illumination: a decentred or small pupil shadows a crescent of the field and dims its periphery",
    ceiling=3.0, ceiling_note="illumination loss <= 3 stops: a small, decentred pupil leaves the shadowed periphery ~8x darker; darker, the image is rejected and retaken",
    side_effects=("smoothing",), side_effect_note="dimmed parts carry fewer photons: the noise variance falls as the gain (shot noise), the relative noise rises",
)
def fundus_illumination(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    r"""Uneven illumination of the fundus from a small or decentred pupil.

    **Physics.** The fundus camera lights the retina through the pupil with an annulus of light and
    images it through the annulus' centre. If the pupil is small or the camera is decentred, the iris
    clips part of the annulus: the retina on one side of the field gets less light, a dark crescent
    with a soft (out-of-focus) edge, and the periphery is dimmed more than the centre. Foracchia et al.
    (2005) model the observed image as :math:`I = C(x)\,I_0 + L(x)` with slowly varying :math:`C, L`.

    **Model.** The light reaching the retina is a disc displaced from the field's centre :math:`o`
    (radius :math:`R`) by :math:`\delta\,u` (:math:`\delta \in [0.4, 0.9]\,R`, direction :math:`u`) with
    radius :math:`\rho R` (:math:`\rho \in [0.8, 1.1]`); the retina outside it is in the iris' shadow,
    with an edge of width :math:`w \in [0.12, 0.25]\,R`:

    .. math:: c(x) = \sigma\Big(\frac{|x - o + \delta u| - \rho R}{w}\Big)

    (:math:`\sigma` the logistic function): a crescent on the side :math:`u`. The small pupil also
    vignettes the periphery, :math:`v(x) = |x - o|^2 / R^2`, and a smooth random field :math:`\phi`
    (correlation length 20 % of the side) adds the eye's own unevenness; all from ``rng``. The loss map

    .. math:: \psi = 0.6\,c + 0.4\,r_v v + 0.05\,\phi, \qquad
              D = \frac{\psi - \min_F \psi}{\max_F \psi - \min_F \psi} \in [0, 1]

    (:math:`r_v \in [0.5, 1]`, min and max over the field :math:`F`) gives the illumination
    :math:`C(x) = 2^{-s\,D(x)}` (:math:`s` in stops): the best-lit point keeps its exposure (the flash is
    set for it), the darkest point of the crescent loses :math:`s` stops, and

    .. math:: I' = C(x)\, I.

    The crescent dominates the loss, so the change is not a global gain (an affine map of the
    intensities explains little of it). The black outside the field stays black (multiplicative) and
    nothing is pushed into saturation. Fewer photons reach the dimmed parts: their shot noise falls only
    as :math:`\sqrt{C}` while the signal falls as :math:`C`
    (:func:`~medfm_hf.perturbations._common.shot_noise`).

    Ceiling: 3 stops: a small, decentred pupil leaves the shadowed periphery about 8x darker; darker,
    the image is rejected and retaken. The deeper levels can be out of reach (reason ``ceiling``).

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Peak illumination loss :math:`s` in stops (factor :math:`2^{-s}`), ``[0, 8]``; ceiling 3.
    rng : numpy.random.Generator
        Source of the crescent (offset, direction, radius, edge), the fall-off, the smooth field and the
        noise field.

    Returns
    -------
    numpy.ndarray
        The unevenly lit image, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    delta = rng.uniform(0.4, 0.9)
    rho = rng.uniform(0.8, 1.1)
    edge = rng.uniform(0.12, 0.25)
    r_v = rng.uniform(0.5, 1.0)
    phi = _smooth_field(rng, (h, w), 0.2 * side)
    z = rng.standard_normal((h, w))
    field = fundus_field(x)
    oy, ox, big_r = disc_geometry(field)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    uy, ux = np.sin(theta), np.cos(theta)
    lit_r = np.hypot(yy - oy + delta * big_r * uy, xx - ox + delta * big_r * ux)
    crescent = 1.0 / (1.0 + np.exp(-(lit_r - rho * big_r) / (edge * big_r)))
    vignette = ((yy - oy) ** 2 + (xx - ox) ** 2) / big_r**2
    psi = 0.6 * crescent + 0.4 * r_v * vignette + 0.05 * phi
    inside = field > 0.5
    region = inside if inside.sum() > 16 else np.ones_like(inside)
    lo, hi = float(psi[region].min()), float(psi[region].max())
    loss = np.clip((psi - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    # the flash is set so the best-lit part of the field is exposed right: the error only dims
    gain = 2.0 ** (-strength * loss)
    out = x * gain[..., None]
    if inside.sum() > 16:  # fewer photons: the relative shot noise grows
        out = np.stack([shot_noise(x[..., c], out[..., c], gain, z, inside) for c in range(x.shape[2])], axis=2)
    return from_float(out.reshape(image.shape), image.dtype)
