"""Histopathology artifacts: stain variation, coverslip air bubbles and tissue folds.

Bright-field microscopy obeys Beer-Lambert: the transmitted intensity of channel *c* is
:math:`I_c = I_{0,c} \\exp(-\\mathrm{OD}_c)` and the optical density is a linear mix of the stains'
concentrations, :math:`\\mathrm{OD} = C\\,M` with the stain matrix :math:`M` (rows: haematoxylin, eosin,
DAB optical-density vectors; Ruifrok & Johnston 2001). Stain and thickness artifacts are therefore
modelled on optical densities / concentrations, never as hue shifts. A grey image is treated as one
channel with its own optical density.

References
----------
* Ruifrok A.C., Johnston D.A. "Quantification of histochemical staining by color deconvolution."
  Anal Quant Cytol Histol 23(4):291-299, 2001.
* Tellez D. et al. "Quantifying the effects of data augmentation and stain color normalization in
  convolutional neural networks for computational pathology." Med Image Anal 58:101544, 2019.
* Taqi S.A. et al. "A review of artifacts in histopathology." J Oral Maxillofac Pathol 22(2):279, 2018.
* Kanwal N. et al. "The devil is in the details: whole slide image acquisition and processing for
  artifacts detection, color variation, and data augmentation: a review." IEEE Access 10, 2022.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float

# Ruifrok & Johnston (2001) H, E, DAB optical-density vectors (rows, unit length to two decimals),
# the values scikit-image uses in ``skimage.color.rgb2hed`` (tested against it).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)


def optical_density(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Optical density :math:`-\\ln I` of a float image in [0, 1] (floored at half a grey level)."""
    floor = 0.5 / float(np.iinfo(dtype).max)
    return -np.log(np.maximum(x, floor))


def stain_concentrations(image: np.ndarray) -> np.ndarray:
    """H, E, DAB concentrations ``(H, W, 3)`` of an RGB ``uint8``/``uint16`` image (colour deconvolution).

    Natural-log optical densities times the inverse Ruifrok-Johnston stain matrix; equal, up to the
    log base and the floor, to ``skimage.color.rgb2hed``.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"stain_concentrations needs an RGB (H, W, 3) image, got shape {image.shape}")
    return optical_density(to_float(image), image.dtype) @ HED_FROM_RGB


def _channels(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x


@register_perturbation(
    "path_stain",
    modalities=("pathology",),
    strength_range=(0.0, 5.0),
    description="H&E(-DAB) stain-concentration change via colour deconvolution (Tellez et al. 2019)",
    ceiling=0.2, ceiling_note="sigma <= 0.2 on the HED concentrations: the strongest published stain augmentation (Tellez et al. 2019, HED-strong)", side_effects=("affine",), side_effect_note="stain variation is a global change of dye concentrations by nature: at the published magnitudes an RGB affine map reproduces much of it",
)
def path_stain(
    image: np.ndarray, strength: float, rng: np.random.Generator, fov: np.ndarray | None = None
) -> np.ndarray:
    r"""Stain variation through colour deconvolution (HED augmentation, Tellez et al. 2019).

    **Physics.** Staining protocols, stain batches, section thickness and scanner differences change
    how much of each dye binds and how it absorbs, i.e. the stain *concentrations* :math:`C_i` of
    haematoxylin, eosin (and DAB in immunohistochemistry), not the hue of the image as such. By
    Beer-Lambert the optical density is :math:`\mathrm{OD} = C M` (Ruifrok & Johnston 2001).

    **Model.** Deconvolve, :math:`C = \mathrm{OD}\,M^{-1}` with :math:`\mathrm{OD} = -\ln I`; perturb each
    stain's concentration by a scale and a bias,

    .. math:: C_i' = e^{s a_i} C_i + s\, b_i \,\bar C, \qquad
              (a, b) = \sqrt{2}\,\frac{g}{\lVert g \rVert},\; g \sim \mathcal N(0, I_6),

    clipped at zero (a bias cannot remove dye that is not there; where deconvolution gives a slightly
    negative input concentration the clip is at that value), where :math:`\bar C = 0.25` is a typical
    concentration and :math:`s` the strength; the direction is
    random (``rng``) and its length fixed, so :math:`s` alone sets the size of the change (Tellez et al.
    draw :math:`\alpha_i \sim U(1-\sigma, 1+\sigma)`, :math:`\beta_i \sim U(-\sigma, \sigma)`; here
    :math:`\sigma \approx s/\sqrt 3`). Re-compose :math:`I' = \exp(-C' M)`. The tissue structure in
    optical density is kept: each H/E/DAB channel of the output is an affine function of the input's
    (up to the clip at zero).

    The bias acts inside the tissue FOV only (:mod:`medfm_hf.perturbations.fov`; softened by 1 px):
    glass binds no dye and stays glass (the earlier model turned empty glass brown).

    **Ceiling and reach.** Each stain's log-scale and bias have a standard deviation :math:`s/\sqrt 3`,
    the spread of Tellez et al.'s uniform :math:`U(-\sigma, \sigma)` with :math:`\sigma = s`; the published
    range is :math:`\sigma = 0.05` ("HED-light") to :math:`0.2` ("HED-strong"), so the ceiling is
    :math:`s = 0.2`. Within it the stronger levels are often out of reach (measured in
    ``docs/physics_audit.md``); the earlier range, up to :math:`s = 5`, reached them by bleaching tiles
    (up to 64 % near-white).

    Ceiling: :math:`s = 0.2` -- :math:`\sigma \le 0.2` on the HED concentrations, the strongest published stain
    augmentation (Tellez et al. 2019, "HED-strong").

    **Grey input** has no colour to deconvolve: the single optical-density channel is perturbed,
    :math:`\mathrm{OD}' = \max(e^{s a}\mathrm{OD} + s\,b\,\bar C, 0)`, with the first pair of the
    direction.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` (or grey) ``uint8``/``uint16`` bright-field image.
    strength : float
        Perturbation size :math:`s`, ``[0, 5]``.
    rng : numpy.random.Generator
        Source of the perturbation direction.

    Returns
    -------
    numpy.ndarray
        The re-stained image, same dtype and shape.
    """
    g = rng.standard_normal(6)
    g = np.sqrt(2.0) * g / max(float(np.linalg.norm(g)), 1e-12)
    a, b = g[:3], g[3:]
    c_bar = 0.25
    x = to_float(image)
    od = optical_density(x, image.dtype)
    tissue = np.ones(image.shape[:2]) if fov is None else ndi.gaussian_filter(np.asarray(fov, float), 1.0)
    if image.ndim == 2:
        od2 = np.maximum(np.exp(strength * a[0]) * od + strength * b[0] * c_bar * tissue, 0.0)
        return from_float(np.exp(-od2), image.dtype)
    conc = od @ HED_FROM_RGB
    # the bias (more or less dye bound) acts on tissue only: glass binds no stain and stays glass
    conc2 = conc * np.exp(strength * a) + strength * b * c_bar * tissue[..., None]
    # a stain cannot be removed below zero: clip at 0 (or at the input's own value where colour
    # deconvolution already gives a slightly negative concentration, so that s -> 0 stays continuous)
    conc2 = np.maximum(conc2, np.minimum(conc, 0.0))
    return from_float(np.exp(-(conc2 @ RGB_FROM_HED)), image.dtype)


@register_perturbation(
    "path_bubbles",
    modalities=("pathology",),
    strength_range=(0.0, 1.0),
    description="air bubbles under the coverslip: dark refractive rims, defocused hazy interior",
    ceiling=1.0,
    ceiling_note="1 (the range top): 4-7 bubbles of radius 25-55 % of the side cover most or all of the tile; air "
    "bubbles under a coverslip are 0.05 to several mm across, as large as or larger than a 256 px tile at "
    "20-40x (0.06-0.13 mm), so a tile wholly under bubbles is common in slide scans (Taqi et al. 2018)",
    side_effects=("smoothing",), side_effect_note="an air bubble's refraction and edge blur the tissue under it",
)
def path_bubbles(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    r"""Air bubbles trapped in the mounting medium under the coverslip.

    **Physics.** Air (:math:`n = 1.0`) trapped in mounting medium (:math:`n \approx 1.5`) forms lens-shaped
    pockets. At the curved meniscus light is refracted (and totally internally reflected) out of the
    objective's acceptance cone, so the bubble outline is a thick dark ring; inside, the extra
    air-glass interfaces and the changed optical path put the tissue out of focus and wash it out
    (Taqi et al. 2018; Kanwal et al. 2022).

    **Model.** :math:`n \in \{4..7\}` bubbles with centres :math:`c_k` and maximal radii :math:`R_k`
    (25-55 % of the image side: a 256-px tile at 40x is only about 0.06 mm wide, smaller
    than many bubbles) from ``rng``; at strength :math:`s` their radii are :math:`r_k = s R_k`
    (the bubbles grow). With the depth inside the union :math:`e(x) = \max_k (r_k - |x - c_k|)` (pixels)
    and rim width :math:`\omega = 0.12\, r_{k^*}`:

    .. math:: I' = \big[a\,((1-h)\,(I * g_{\sigma}) + h) + (1-a)\,I\big]\,(1 - D_0\,\exp(-(e/\omega)^2)),

    with :math:`a = \mathrm{clip}(e + \tfrac12, 0, 1)` the anti-aliased inside, a defocus blur
    :math:`\sigma` = 3 px, a haze :math:`h` = 0.3 and rim darkness :math:`D_0 \in [0.6, 0.85]`
    (from ``rng``; outside the bubble the rim decays within a pixel; bubbles smaller than 3 px fade
    in, :math:`D_0 \min(1, r/3)`).

    Ceiling: 1 (the range top): 4-7 bubbles of radius 25-55 % of the side cover most or all of the tile;
    air bubbles under a coverslip are 0.05 to several mm across, as large as or larger than a 256 px tile at
    20-40x (0.06-0.13 mm), so a tile wholly under bubbles is common in slide scans (Taqi et al. 2018).

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Bubble size :math:`s` as a fraction of the drawn maximal radii, ``[0, 1]``.
    rng : numpy.random.Generator
        Source of the bubble count, centres, radii and rim darkness.

    Returns
    -------
    numpy.ndarray
        The image with bubbles, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    n = int(rng.integers(4, 8))
    centres = rng.uniform(0.05, 0.95, (n, 2)) * np.array([h, w])
    radii = rng.uniform(0.25, 0.55, n) * min(h, w)
    dark = rng.uniform(0.6, 0.85)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    depth = np.full((h, w), -np.inf)
    rim_w = np.ones((h, w))
    vis = np.zeros((h, w))
    for k in range(n):
        r_k = strength * radii[k]
        e_k = r_k - np.hypot(yy - centres[k, 0], xx - centres[k, 1])
        better = e_k > depth
        depth = np.where(better, e_k, depth)
        rim_w = np.where(better, max(0.12 * r_k, 0.5), rim_w)
        vis = np.where(better, min(1.0, r_k / 3.0), vis)  # sub-pixel bubbles fade in
    inside = np.clip(depth + 0.5, 0.0, 1.0)[..., None]
    rim_profile = np.where(depth >= 0, np.exp(-((depth / rim_w) ** 2)), np.exp(-(depth**2)))
    blurred = ndi.gaussian_filter(x, sigma=(3.0, 3.0, 0.0))
    haze = 0.3
    out = inside * ((1 - haze) * blurred + haze) + (1 - inside) * x
    out = out * (1.0 - dark * vis * rim_profile)[..., None]
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "path_fold",
    modalities=("pathology",),
    strength_range=(0.0, 1.0),
    description="tissue fold: a flap of the section folded in over the tile (optical densities add)",
    ceiling=1.0,
    ceiling_note="1 (the range top): the flap covers the whole tile, doubling the section's thickness (optical "
    "densities add once); folds are up to millimetres wide, wider than a tile (~0.1 mm), so a tile wholly "
    "inside a fold is common; a flap folded twice (triple thickness) is not modelled",
    side_effects=("smoothing",), side_effect_note="a fold doubles the tissue thickness: darker, lower contrast",
)
def path_fold(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    r"""Tissue fold: a flap of the section folded over the tissue of the tile.

    **Physics.** When the ribbon is floated and picked up, part of the section can fold over onto
    itself. Where the flap lies on the tissue the light crosses two sections, so by Beer-Lambert the
    optical densities add: a darker, more saturated band whose texture is the flap's (mirrored) tissue
    superimposed on the tissue below (Taqi et al. 2018; Kanwal et al. 2022).

    **Model.** The crease lies just outside the tile (a tile is a small field of a large section, and
    a fold that crosses it usually comes from beyond its border), along a line with normal :math:`n`
    (angle from ``rng``) at a margin of 0-8 % of the side (``rng``) from the nearest corner; with the
    distance to the crease :math:`u(x) > 0`, the flap of width :math:`w = s\,W`
    (:math:`W` 130-170 % of the side, ``rng``; at the top of the range the flap covers most or all of the tile) covers :math:`u < w`:

    .. math:: \mathrm{OD}'(x) = \mathrm{OD}(x) + \mathrm{clip}(w - u(x) + 	frac12, 0, 1)\,
              \mathrm{OD}(x - 2u(x)\,n),

    where the flap's tissue, which lies beyond the tile, is the tile's content reflected at the tile
    border (the usual "mirror" boundary extension). The tissue under the flap stays where it is, so
    masks and boxes do not move (the fold hides and overlays the anatomy; it does not displace it).

    **Reach.** At the top of the range the flap covers the whole tile; the SSIM of a doubled section
    then depends on the tissue and is 0.60-0.67 on some demo tiles, so level 5 is not always
    reachable: measured in band on the demo test images L1-L4 100 %, L5 67 % (seed 0) / 50 % (seed 1).

    Ceiling: 1 (the range top): the flap covers the whole tile, doubling the section's thickness (optical
    densities add once); folds are up to millimetres wide, wider than a tile (~0.1 mm), so a tile wholly
    inside a fold is common; a flap folded twice (triple thickness) is not modelled.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Flap width :math:`s` as a fraction of the drawn maximal width, ``[0, 1]``.
    rng : numpy.random.Generator
        Source of the crease angle, margin and maximal width.

    Returns
    -------
    numpy.ndarray
        The folded image, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    margin = rng.uniform(0.0, 0.08) * side
    max_width = rng.uniform(1.3, 1.7) * side
    normal = np.array([np.sin(theta), np.cos(theta)])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    proj = yy * normal[0] + xx * normal[1]
    u = proj - (float(proj.min()) - margin)
    width = strength * max_width
    covered = np.clip(width - u + 0.5, 0.0, 1.0)
    od = optical_density(x, image.dtype)
    sel = covered > 0
    out_od = od.copy()
    if sel.any():
        src = [(yy - 2.0 * u * normal[0])[sel], (xx - 2.0 * u * normal[1])[sel]]
        for c in range(od.shape[2]):
            flap = ndi.map_coordinates(od[..., c], src, order=1, mode="mirror")
            out_od[..., c][sel] += covered[sel] * flap
    return from_float(np.exp(-out_od).reshape(image.shape), image.dtype)
