"""Dermoscopy artifacts: hair occlusion, circular field-of-view vignetting, immersion-fluid glare and bubbles.

Contact dermoscopes press a glass plate on the skin through an immersion fluid (oil, gel, alcohol) or
use cross-polarised light without contact; hair between the plate and the skin, the round optics of
the scope, and bubbles/glare in the fluid are the classic acquisition artifacts. Grey images are
treated as one channel.

References
----------
* Lee T. et al. "DullRazor: a software approach to hair removal from images." Comput Biol Med
  27(6):533-543, 1997.
* Mirzaalian H., Lee T.K., Hamarneh G. "Hair enhancement in dermoscopic images using dual-channel
  quaternion tubularness filters and MRF-based multilabel optimization." IEEE TIP 23(12), 2014
  (and their "HairSim" hair-simulation model).
* Kassem M.A. et al. "Machine learning and deep learning methods for skin lesion classification and
  diagnosis: a systematic review." Diagnostics 11(8):1390, 2021 (artifact survey: hair, bubbles,
  vignetting, ruler marks).
* Goldman D.B. "Vignette and exposure calibration and compensation." IEEE TPAMI 32(12), 2010
  (:math:`\\cos^4` natural vignetting).
* Benvenuto-Andrade C. et al. "Differences between polarized light dermoscopy and immersion contact
  dermoscopy for the evaluation of skin lesions." Arch Dermatol 143(3):329-338, 2007.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float

MAX_HAIRS = 80
"""Number of hairs drawn per image; ``strength`` says how many of them are visible."""


def _channels(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x


def _hair_coverage(
    shape: tuple[int, int], strength: float, params: dict[str, np.ndarray], supersample: int = 4
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the first ``strength`` hairs (the last one partly grown)."""
    h, w = shape
    ss = supersample
    canvas = np.zeros((h * ss, w * ss), np.uint8)
    n_full = int(np.floor(strength))
    frac = strength - n_full
    t = np.linspace(0.0, 1.0, 48)
    for k in range(min(MAX_HAIRS, n_full + 1)):
        part = 1.0 if k < n_full else frac
        if part <= 0:
            break
        p0, p1, p2 = params["p0"][k], params["p1"][k], params["p2"][k]
        tk = t * part
        pts = ((1 - tk)[:, None] ** 2) * p0 + (2 * (1 - tk) * tk)[:, None] * p1 + (tk[:, None] ** 2) * p2
        pts = np.rint(pts[:, ::-1] * ss).astype(np.int32)  # (x, y) for OpenCV
        thick = max(1, int(round(params["width"][k] * ss)))
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 255, thickness=thick, lineType=cv2.LINE_8)
    cov = canvas.reshape(h, ss, w, ss).mean(axis=(1, 3)) / 255.0
    return cov


@register_perturbation(
    "derm_hair",
    modalities=("dermoscopy",),
    strength_range=(0.0, float(MAX_HAIRS)),
    description="dark terminal hairs lying between the dermoscope plate and the skin",
    ceiling=float(MAX_HAIRS),
    ceiling_note="80 hairs (the range top) cover ~20 % of the frame (16-24 %, union at opacity > 0.5): the "
    "hairiest unshaved skin -- up to ~30 follicles per square cm on the back and upper arm (Otberg et al. 2004), "
    "hairs 1-2 cm long and 60-120 um thick lying flat under the plate -- covers ~15-50 % of a dermoscope's "
    "field (density x length x width, less the overlaps)",
)
def derm_hair(image: np.ndarray, strength: float, rng: np.random.Generator, occlusion: list | None = None) -> np.ndarray:
    r"""Hair occlusion.

    **Physics.** Terminal hairs are strongly pigmented (eumelanin) cylinders 50-120 µm thick lying on the
    skin under the dermoscope plate; being in focus and nearly opaque they hide the pigment network
    beneath as dark curved lines, the main obstacle for lesion segmentation (Lee et al. 1997,
    DullRazor; Mirzaalian et al. 2014, HairSim).

    **Model.** ``MAX_HAIRS`` hairs are drawn once from ``rng``: quadratic Bezier curves
    :math:`B(t) = (1-t)^2 p_0 + 2t(1-t)p_1 + t^2 p_2` with a random start :math:`p_0`, direction
    (a dominant combing direction plus spread), length 25-75 % of the side and curvature (the control
    point :math:`p_1` offset sideways) and width 1-3.5 px (at 256 px); one opacity
    :math:`\alpha \in [0.75, 0.98]` and one melanin colour :math:`c` (dark brown to black) per image.
    ``strength`` :math:`s` is the hair count: hairs :math:`k < \lfloor s \rfloor` are drawn whole, hair
    :math:`\lfloor s \rfloor` over the first fraction :math:`s - \lfloor s\rfloor` of its length (so the
    count is continuous). The union coverage :math:`a(x)` of the hairs, rendered at 4x supersampling,
    is composited over the skin:

    .. math:: I' = (1 - \alpha a)\, I + \alpha a\, c.

    Ceiling: 80 hairs (the range top) cover ~20 % of the frame (16-24 %, union at opacity > 0.5): the
    hairiest unshaved skin -- up to ~30 follicles per square cm on the back and upper arm (Otberg et al.,
    "Variations of hair follicle size and distribution in different body sites", J. Invest. Dermatol. 122
    (2004) 14), hairs 1-2 cm long and 60-120 µm thick lying flat under the plate -- covers ~15-50 % of a
    dermoscope's field (density x length x width, less the overlaps).

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Number of visible hairs :math:`s`, ``[0, MAX_HAIRS]`` (fractional: the last hair partly grown).
    rng : numpy.random.Generator
        Source of every hair's geometry, width, opacity and colour.

    Returns
    -------
    numpy.ndarray
        The image with hair, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = float(min(h, w))
    n = MAX_HAIRS
    comb = rng.uniform(0.0, np.pi)
    angles = comb + rng.normal(0.0, 0.6, n)
    lengths = rng.uniform(0.25, 0.75, n) * side
    p0 = rng.uniform(-0.1, 1.1, (n, 2)) * np.array([h, w])
    bend = rng.normal(0.0, 0.15, n) * lengths
    width = rng.uniform(1.0, 3.5, n) * side / 256.0
    alpha = rng.uniform(0.75, 0.98)
    colour = np.array([0.10, 0.07, 0.05]) * rng.uniform(0.5, 1.5)
    direction = np.stack([np.sin(angles), np.cos(angles)], axis=1)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    p2 = p0 + direction * lengths[:, None]
    p1 = (p0 + p2) / 2 + normal * bend[:, None]
    params = {"p0": p0, "p1": p1, "p2": p2, "width": width}
    cov = _hair_coverage((h, w), strength, params)
    a = (alpha * cov)[..., None]
    c = colour if x.shape[2] == 3 else np.array([colour.mean()])
    out = x * (1 - a) + c * a
    if occlusion is not None:
        occlusion.append(a[..., 0])
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "derm_vignette",
    modalities=("dermoscopy",),
    strength_range=(0.0, 0.6),
    description="circular field of view of the dermoscope optics: dark corners and cos^4 falloff",
    ceiling=0.6,
    ceiling_note="0.6 (the range top): the image circle's diameter 57 % of the frame's side, a quarter of the frame "
    "lit -- a dermoscope on a phone or camera at 1x zoom, the circle seen inside a black frame and not cropped; a "
    "smaller circle would leave most of the sensor dark and is zoomed or cropped at capture",
    side_effects=("smoothing", "zeroed"), side_effect_note="the dark corners of the field stop are the artifact"
    "; the black corners carry no texture",
)
def derm_vignette(
    image: np.ndarray, strength: float, rng: np.random.Generator, occlusion: list | None = None
) -> np.ndarray:
    r"""Circular field-of-view vignetting.

    **Physics.** The dermoscope's round lens and tube form a circular aperture stop: outside the image
    circle no light reaches the sensor (mechanical vignetting, black corners), and inside it the
    illumination falls off toward the rim (natural :math:`\cos^4\theta` vignetting, Goldman 2010). How
    much of the frame is lost depends on the scope/adaptor and the zoom (Kassem et al. 2021).

    **Model.** The image circle has centre :math:`c` (offset up to 4 % of the side from the frame
    centre, ``rng``) and radius :math:`R(s) = (1 - s)\,R_0`, with :math:`R_0` the distance from
    :math:`c` to the farthest corner; its edge is soft over :math:`\epsilon` = 1.5 % of the side
    (the aperture is out of focus). Inside, :math:`\cos^4` falloff with field angle
    :math:`\tan\theta = \tan\theta_{max}\, r / R_0`, :math:`\tan\theta_{max} = 0.6\,s`:

    .. math:: I' = I\,\mathrm{clip}\Big(\tfrac{R(s) - r}{\epsilon} + \tfrac12, 0, 1\Big)\cos^4\theta(r),

    with :math:`r = |x - c|`. The black outside the circle is the sensor's dark level (0).

    Ceiling: 0.6 (the range top): the image circle's diameter 57 % of the frame's side, a quarter of the
    frame lit -- a dermoscope on a phone or camera at 1x zoom, the circle seen inside a black frame and not
    cropped; a smaller circle would leave most of the sensor dark and is zoomed or cropped at capture.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Fractional shrinkage :math:`s` of the image circle, ``[0, 0.6]``.
    rng : numpy.random.Generator
        Source of the circle's centre offset.

    Returns
    -------
    numpy.ndarray
        The vignetted image, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    offset = rng.uniform(-0.04, 0.04, 2) * side
    cy, cx = (h - 1) / 2 + offset[0], (w - 1) / 2 + offset[1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(yy - cy, xx - cx)
    r0 = float(r.max()) + 1.0
    radius = (1.0 - strength) * r0
    eps = 0.015 * side
    aperture = np.clip((radius - r) / eps + 0.5, 0.0, 1.0)
    tan_theta = 0.6 * strength * r / r0
    falloff = 1.0 / (1.0 + tan_theta**2) ** 2  # cos^4(theta)
    out = x * (aperture * falloff)[..., None]
    if occlusion is not None:  # light lost: opacity 0.5 = half the light
        occlusion.append(1.0 - aperture * falloff)
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "derm_reflection",
    modalities=("dermoscopy",),
    strength_range=(0.0, 1.0),
    description="immersion-fluid artifacts: glare from the contact plate and trapped gel/air bubbles",
    ceiling=1.0,
    ceiling_note="1 (the range top): 20-40 bubbles of 4-16 % of the side cover 41-76 % of the field (mean 61 %), "
    "a foamed immersion gel, below the ~90 % of a close-packed layer of bubbles under the plate; the glare "
    "veil adds at most ~0.45 of full scale, while the LED ring's specular reflection on a non-polarised "
    "contact plate can reach the sensor's full scale",
)
def derm_reflection(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    r"""Immersion-fluid glare and gel bubbles (contact, non-polarised dermoscopy).

    **Physics.** In contact dermoscopy the skin is covered with fluid and a glass plate. The plate and
    the fluid surface reflect the scope's ring of LEDs (Fresnel reflection, about 4 % per air-glass
    interface, far brighter than the diffuse skin signal where it is imaged): a bright, washed-out
    glare region. Air bubbles trapped in the gel are imaged as round structures with a bright
    reflecting rim and a thin dark refraction edge (Benvenuto-Andrade et al. 2007; Kassem et al. 2021).

    **Model.** Glare: an additive veil :math:`G(x)` of the light's colour shaped like the reflected LED
    ring, a ring of radius :math:`\rho_g` and width :math:`w_g` around a centre near the frame centre
    (all from ``rng``), multiplied by :math:`(1 + 0.3\phi)` with a smooth random field :math:`\phi`
    for the uneven fluid surface. Bubbles: :math:`n \in \{20..40\}` circles with centres and radii :math:`R_k`
    (4-16 % of the side) from ``rng``; at strength :math:`s` the first :math:`\lfloor s n \rfloor` are
    present and the next one has grown to :math:`(s n - \lfloor s n\rfloor) R_k` (more gel, more
    bubbles, so the artifact only ever adds structure); each adds a bright rim
    :math:`0.6\,e^{-((|x-c_k| - r_k)/\omega)^2}` (:math:`\omega = 0.12 r_k + 0.5`) just inside a thin dark
    edge and lifts its interior by 10 % (rim and edge fade in over the first 3 px of radius). With strength :math:`s`:

    .. math:: B = I\,(1 + 0.1\,b_{in}) (1 - 0.5\,b_{edge}), \quad A = \min(0.6\,b_{rim} + 0.35\,s\,G, 0.97),
              \quad I' = 1 - (1 - B)(1 - A),

    the reflected light added through the camera's highlight roll-off (a screen blend) rather than
    clipped: the earlier additive model reached its levels by saturating about 20 % of the frame.

    Ceiling: 1 (the range top): 20-40 bubbles of 4-16 % of the side cover 41-76 % of the field (mean 61 %),
    a foamed immersion gel, below the ~90 % of a close-packed layer of bubbles under the plate; the glare
    veil adds at most ~0.45 of full scale, while the LED ring's specular reflection on a non-polarised
    contact plate can reach the sensor's full scale.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        :math:`s` in ``[0, 1]``: glare intensity and the number of bubbles grow together.
    rng : numpy.random.Generator
        Source of the glare geometry and the bubbles.

    Returns
    -------
    numpy.ndarray
        The image with glare and bubbles, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # glare: reflected LED ring
    gc = (np.array([h, w]) - 1) / 2 + rng.uniform(-0.15, 0.15, 2) * side
    ring_r = rng.uniform(0.1, 0.35) * side
    ring_w = rng.uniform(0.08, 0.16) * side
    phi = ndi.gaussian_filter(rng.standard_normal((h, w)), 0.08 * side, mode="wrap")
    phi = (phi - phi.mean()) / max(float(phi.std()), 1e-12)
    rg = np.hypot(yy - gc[0], xx - gc[1])
    glare = np.exp(-(((rg - ring_r) / ring_w) ** 2)) * np.clip(1.0 + 0.3 * phi, 0.0, None)
    # bubbles
    n = int(rng.integers(20, 41))
    centres = rng.uniform(0.05, 0.95, (n, 2)) * np.array([h, w])
    radii = rng.uniform(0.04, 0.16, n) * side
    b_in = np.zeros((h, w))
    b_rim = np.zeros((h, w))
    b_edge = np.zeros((h, w))
    shown = strength * n  # bubbles trapped so far: the first floor(shown) whole, the next one growing
    for k in range(n):
        r_k = radii[k] * float(np.clip(shown - k, 0.0, 1.0))
        if r_k <= 0:
            break
        om = 0.12 * r_k + 0.5
        vis = min(1.0, r_k / 3.0)  # sub-pixel bubbles fade in instead of popping up
        reach = r_k + 4.0 * om  # beyond this the rim/edge profiles are < 1e-6
        y0, y1 = max(int(centres[k, 0] - reach), 0), min(int(centres[k, 0] + reach) + 2, h)
        x0, x1 = max(int(centres[k, 1] - reach), 0), min(int(centres[k, 1] + reach) + 2, w)
        if y0 >= y1 or x0 >= x1:
            continue
        win = (slice(y0, y1), slice(x0, x1))
        d = np.hypot(yy[win] - centres[k, 0], xx[win] - centres[k, 1])
        b_in[win] = np.maximum(b_in[win], np.clip(r_k - d + 0.5, 0.0, 1.0))
        b_rim[win] = np.maximum(b_rim[win], vis * np.exp(-(((d - (r_k - om)) / om) ** 2)))
        b_edge[win] = np.maximum(b_edge[win], vis * np.exp(-(((d - r_k - 0.5 * om) / (0.6 * om)) ** 2)))
    light = np.array([1.0, 1.0, 0.98]) if x.shape[2] == 3 else np.array([1.0])
    base = np.clip(x * (1 + 0.1 * b_in)[..., None] * (1 - 0.5 * b_edge)[..., None], 0.0, 1.0)
    add = np.clip((0.6 * b_rim + 0.35 * strength * glare)[..., None] * light, 0.0, 0.97)
    # reflected light adds to the skin's; the camera's tone curve rolls the highlights off (screen blend)
    # instead of clipping them, so the glare washes detail out without burning the frame to white
    out = 1.0 - (1.0 - base) * (1.0 - add)
    return from_float(out.reshape(image.shape), image.dtype)
