"""Endoscopy artifacts: specular highlights, bubbles, blood and overexposure.

In an endoscope the light guides sit next to the lens, so the light and the viewing directions nearly
coincide, the scene is wet mucosa, and irradiance falls off as the inverse square of the distance to
the tip. Artifacts are applied inside the circular field of view only (the black surround of the
scope image carries no signal). Grey images are treated as a single channel.

References
----------
* Shafer S.A. "Using color to separate reflection components." Color Res Appl 10(4):210-218, 1985.
* Arnold M. et al. "Automatic segmentation and inpainting of specular highlights for endoscopic
  imaging." EURASIP J Image Video Process 2010:814319, 2010.
* Ali S. et al. "An objective comparison of detection and segmentation algorithms for artefacts in
  clinical endoscopy." Sci Rep 10:2748, 2020 (EAD challenge: specularity, saturation, bubbles, blood,
  blur, contrast, instrument).
* Prahl S. "Optical absorption of hemoglobin." Oregon Medical Laser Center, 1999 (tabulated molar
  extinction of HbO2/Hb).
* Janesick J.R. *Scientific Charge-Coupled Devices*, SPIE Press, 2001 (full-well saturation and
  blooming).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from medfm_hf.perturbations._common import disc_geometry
from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float

GAMMA = 2.2
"""Display gamma used to go between the stored image and linear irradiance."""


def _channels(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 2 else x


def field_of_view(x: np.ndarray) -> np.ndarray:
    """Soft field-of-view map in [0, 1]: 1 where the scope image has signal, 0 on its black surround."""
    lum = ndi.gaussian_filter(x.mean(axis=2), 2.0)
    return np.clip((lum - 0.02) / 0.04, 0.0, 1.0)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ``sigma`` pixels."""
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / max(float(f.std()), 1e-12)


@register_perturbation(
    "endo_specular",
    modalities=("endoscopy",),
    strength_range=(0.0, 20.0),
    description="specular highlights on wet mucosa (dichromatic reflection, co-located light)",
    ceiling=10.0, ceiling_note=(
        "k_s = s/10 <= 1: the glint's peak adds the full display range, so crest glints clip to white as "
        "real highlights do; energy conservation bounds a lobe of shininess p at R0 (p + 2) / (2 rho_d) <= ~3x "
        "the diffuse radiance (Fresnel R0 = 0.02 for a water film, mucosal albedo rho_d >= 0.2, p <= 60), "
        "k_s = 1 is ~6x on tissue at 40 % display: a larger gain would only widen clipped cores into "
        "highlights larger than the mucus film reflects"),
)
def endo_specular(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    r"""Specular highlights on wet mucosa.

    **Physics.** By the dichromatic reflection model (Shafer 1985) the light reflected by tissue is a
    body (diffuse) term plus an interface (specular) term with the colour of the light source. The mucus
    film makes the interface term strong and sharply peaked around the mirror direction; with the light
    guides next to the lens, the mirror direction is met wherever the surface faces the scope, giving
    saturated white spots on folds and bumps (Arnold et al. 2010; Ali et al. 2020).

    **Model.** A mucosal height field :math:`z(x) = A\,\phi(x)` (:math:`\phi` a unit-variance Gaussian
    random field with correlation length :math:`\ell_c` = 4-8 % of the side, from ``rng``;
    :math:`A = 0.6\,\ell_c`, slopes of order one) gives normals
    :math:`n = (-\nabla z, 1)/\lVert\cdot\rVert`. With light and view along the optical axis the
    Blinn-Phong half-vector is the axis, so the specular lobe is :math:`n_z^{\,p}` with the high
    shininess of a wet mucus film, :math:`p \in [20, 60]` (``rng``): small, sharp glints. They sit on the
    crests of the folds -- convex, high-curvature ridges,
    :math:`c(x) = \mathrm{clip}((-\nabla^2\phi/\sigma_{\nabla^2\phi} - 0.5)/1.5, 0, 1)` -- and on tissue near the light (bright, :math:`b(x)` = luminance over its
    95th percentile, clipped to 1): :math:`S(x) = n_z^{\,p}\, c(x)\, b(x)`. (The earlier
    :math:`p \in [6, 20]` without the crest term drew a web of worm-like ridges.) Then

    .. math:: I' = \mathrm{clip}(I + k_s\, S(x)\, F(x)\, \ell, 0, 1),

    with :math:`k_s = s/10` the specular reflectance-times-exposure, :math:`\ell` the (slightly bluish
    white) light colour and :math:`F` the field of view. Raising :math:`k_s` saturates a growing part
    of each highlight.

    **Reach.** The glints stay small: at the ceiling about 4 % of the field of view is lit by more than
    20 grey levels and under 1 % is saturated (demo frames, 256 px), so SSIM stops near 0.93: level 1
    is reached, the deeper levels are not (reason ``ceiling``). More or larger glints would bring back
    the saturated web this model replaced.

    Ceiling: :math:`s = 10` (:math:`k_s = 1`): the glint's peak adds the full display range, so crest
    glints clip to white as real highlights do (Arnold et al. 2010). Energy conservation bounds the peak
    of a lobe of shininess :math:`p` at :math:`R_0 (p + 2) / (2 \rho_d) \lesssim 3` times the diffuse
    radiance (Fresnel :math:`R_0 = 0.02` for a water film, :math:`n = 1.33`; mucosal albedo
    :math:`\rho_d \ge 0.2`; :math:`p \le 60`), and :math:`k_s = 1` is already about 6 times it on tissue
    at 40 % of the display range (the true lobe is sharper than the pixel-scale one); a larger gain would
    only widen clipped cores into highlights larger than the mucus film reflects.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Specular gain :math:`s`, ``[0, 20]`` (:math:`k_s = s/10`); ceiling 10.
    rng : numpy.random.Generator
        Source of the height field and the shininess.

    Returns
    -------
    numpy.ndarray
        The image with highlights, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    corr = rng.uniform(0.04, 0.08) * side
    phi = smooth_field(rng, (h, w), corr)
    shininess = rng.uniform(20.0, 60.0)
    gy, gx = np.gradient(phi * 0.6 * corr)  # slopes of order 1 over a correlation length
    n_z = 1.0 / np.sqrt(1.0 + gx**2 + gy**2)
    # glints sit on the crests of the mucosal folds: high convex curvature, facing the tip
    lap = ndi.laplace(phi)
    crest = np.clip((-lap / max(float(lap.std()), 1e-12) - 0.5) / 1.5, 0.0, 1.0)
    lum = x.mean(axis=2)
    bright = np.clip(lum / max(float(np.quantile(lum, 0.95)), 1e-6), 0.0, 1.0)  # near the light = bright
    spec = n_z**shininess * crest * bright * field_of_view(x)
    light = np.array([0.97, 0.99, 1.0]) if x.shape[2] == 3 else np.array([1.0])
    out = x + (strength / 10.0) * spec[..., None] * light
    return from_float(out.reshape(image.shape), image.dtype)


@register_perturbation(
    "endo_bubbles",
    modalities=("endoscopy",),
    strength_range=(0.0, 1.0),
    description="air bubbles in the lumen fluid: refraction (minification) inside, dark rim, highlight",
    geometric=True,
    ceiling=1.0, ceiling_note=(
        "the range top, s = 1: 16-30 bubbles of radius 6-24 % of the side, a froth over the whole field; "
        "such froth is common without defoaming premedication (simethicone) and in capsule endoscopy, where "
        "cleanliness scales grade frames by the share of the mucosa hidden by bubbles, up to all of it"),
)
def endo_bubbles(
    image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Air bubbles in the fluid film between scope and mucosa, with refraction.

    **Physics.** Air bubbles in mucus, bile or irrigation water are spherical caps of air in water
    (:math:`n_{air}/n_{water} \approx 0.75`): each acts as a diverging lens, so the mucosa seen through it
    is minified and displaced toward the bubble centre; at the rim light is refracted away from the lens
    (dark outline) and the wet cap reflects the light guides (bright highlight). Bubbles are one of the
    artifact classes of the EAD challenge (Ali et al. 2020). The content seen through a bubble moves,
    so the mask is moved with the same refraction map.

    **Model.** :math:`n \in \{16..30\}` bubbles with centres :math:`c_k` and maximal radii :math:`R_k`
    (6-24 % of the side) from ``rng``; radii :math:`r_k = s R_k`. For a pixel :math:`p` in bubble *k*
    (the one it lies deepest in), :math:`\rho = |p - c_k| / r_k`, it shows the point

    .. math:: q = c_k + (p - c_k)\,\big(1 + \kappa\sqrt{1 - \rho^2}\big)

    (a thin diverging lens, :math:`\kappa \in [0.4, 0.8]` from ``rng``; continuous at the rim). The rim
    is darkened by :math:`D_0 e^{-((1-\rho)/0.08)^2}` (:math:`D_0 \in [0.3, 0.5]`, ``rng``) and a highlight of
    the light colour (peak :math:`H \in [0.6, 0.9]`, ``rng``),
    :math:`H e^{-|p - c_k - 0.45 r_k u|^2 / (0.12 r_k)^2}` along a common direction :math:`u`, is added.

    **Reach.** The demo mucosa is smooth and low-contrast, so what refraction does inside the bubbles
    is nearly invisible to SSIM; only rims and glints count, and the black surround of the scope image
    (about 28 % of the frame) never changes. Measured on the demo test images (seed 0): in band at all
    five levels, level 5 at :math:`s` = 0.68-1 (SSIM 0.51-0.55), so a draw of fewer or smaller bubbles
    can stop short of level 5 at the ceiling.

    Ceiling: the range top, :math:`s = 1`: 16-30 bubbles of radius 6-24 % of the side, a froth over the
    whole field. Such froth is common without defoaming premedication (simethicone) and in capsule
    endoscopy, where cleanliness scales grade frames by the share of the mucosa hidden by bubbles, up to
    all of it; the strength is relative to the frame, so the ceiling does not depend on the resolution.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Bubble size :math:`s` as a fraction of the drawn maximal radii, ``[0, 1]``.
    rng : numpy.random.Generator
        Source of the bubbles, the lens power and the highlight direction.
    mask : numpy.ndarray, optional
        Boolean ``(H, W)`` mask, moved by the same refraction map (nearest neighbour).

    Returns
    -------
    tuple of numpy.ndarray
        The image with bubbles (same dtype and shape) and the moved mask (``None`` if none was given).
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    n = int(rng.integers(16, 31))
    fov = field_of_view(x)
    centres = rng.uniform(0.1, 0.9, (n, 2)) * np.array([h, w])
    radii = rng.uniform(0.06, 0.24, n) * side
    kappa = rng.uniform(0.4, 0.8)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    dark = rng.uniform(0.3, 0.5)
    glint = rng.uniform(0.6, 0.9)
    u = np.array([np.sin(phi), np.cos(phi)])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    best = np.full((h, w), -np.inf)  # normalised depth 1 - rho of the bubble the pixel is deepest in
    src_y, src_x = yy.copy(), xx.copy()
    rim = np.zeros((h, w))
    spot = np.zeros((h, w))
    edge = np.zeros((h, w))
    for k in range(n):
        r_k = max(strength * radii[k], 1e-6)
        # work in the bubble's bounding box only (everything outside it is untouched)
        y0, y1 = max(int(centres[k, 0] - r_k) - 2, 0), min(int(centres[k, 0] + r_k) + 3, h)
        x0, x1 = max(int(centres[k, 1] - r_k) - 2, 0), min(int(centres[k, 1] + r_k) + 3, w)
        if y0 >= y1 or x0 >= x1:
            continue
        win = (slice(y0, y1), slice(x0, x1))
        dy, dx = yy[win] - centres[k, 0], xx[win] - centres[k, 1]
        dist = np.hypot(dy, dx)
        depth = 1.0 - dist / r_k
        sel = depth > best[win]
        best[win] = np.where(sel, depth, best[win])
        inside = sel & (depth > 0)
        gain = 1.0 + kappa * np.sqrt(np.clip(1.0 - (dist / r_k) ** 2, 0.0, 1.0))
        src_y[win] = np.where(inside, centres[k, 0] + dy * gain, src_y[win])
        src_x[win] = np.where(inside, centres[k, 1] + dx * gain, src_x[win])
        rim[win] = np.where(sel, np.exp(-((np.maximum(depth, 0.0) / 0.08) ** 2)), rim[win])
        edge[win] = np.where(sel, np.clip(r_k - dist + 0.5, 0.0, 1.0), edge[win])
        sy, sx = dy - 0.45 * r_k * u[0], dx - 0.45 * r_k * u[1]
        spot[win] = np.maximum(spot[win], np.exp(-(sy**2 + sx**2) / (0.12 * r_k) ** 2) * (depth > 0))
    src_y = np.clip(src_y, 0, h - 1)
    src_x = np.clip(src_x, 0, w - 1)
    refr = np.stack([ndi.map_coordinates(x[..., c], [src_y, src_x], order=1) for c in range(x.shape[2])], -1)
    a = (edge * fov)[..., None]
    out = a * refr + (1 - a) * x
    out = out * (1.0 - dark * (rim * edge * fov)[..., None]) + glint * (spot * fov)[..., None]
    out_img = from_float(out.reshape(image.shape), image.dtype)
    if mask is None:
        return out_img, None
    m = np.asarray(mask, dtype=bool)
    moved_src = m[np.rint(src_y).astype(int), np.rint(src_x).astype(int)]
    moved = np.where((edge * fov) >= 0.5, moved_src, m)
    return out_img, moved


@register_perturbation(
    "endo_blood",
    modalities=("endoscopy",),
    strength_range=(0.0, 1.0),
    description="blood film occluding the mucosa (Beer-Lambert absorption by haemoglobin)",
    side_effects=("smoothing",), side_effect_note="blood covers the mucosa's texture",
    ceiling=1.0, ceiling_note=(
        "the range top, s = 1: blood over 97 % of the field, at most beta (q97 - min phi) ~ 9-17 green "
        "absorption lengths thick, i.e. under 1 mm of whole blood (mu_a ~ 285 /cm at 540 nm, Prahl 1999): "
        "the red-out of active bleeding, when fresh blood fills the view"),
)
def endo_blood(image: np.ndarray, strength: float, rng: np.random.Generator, occlusion: list | None = None) -> np.ndarray:
    r"""Blood covering the mucosa.

    **Physics.** Bleeding leaves a film of blood on the mucosa. Haemoglobin absorbs strongly in the blue
    and green and weakly in the red (Prahl 1999), so light crossing the film twice (in and back out) is
    attenuated per channel by Beer-Lambert, while the film itself back-scatters a dark red; thicker
    blood hides the tissue completely (the "blood" class of the EAD challenge, Ali et al. 2020).

    **Model.** Blood pools in the dependent parts of the wall. The mucosal terrain is a smooth random
    field :math:`\phi` (unit variance, correlation length 10-16 % of the side, from ``rng``); a blood
    volume :math:`s \in [0, 1]` fills it up to the level :math:`\ell(s) = \min\phi + s\,(q_{0.97} -
    \min\phi)` (:math:`q_{0.97}` the 97 % quantile), so the film thickness
    :math:`t(x) = \beta \max(0, \ell(s) - \phi(x))` grows and spreads monotonically with :math:`s`
    (:math:`\beta \in [2, 4]` absorption lengths per unit of :math:`\phi`, from ``rng``). With the
    relative absorption :math:`\mu = (0.12, 1.0, 0.8)` (R, G, B) and the blood's own reflectance
    :math:`r_b = (0.30, 0.03, 0.04)`:

    .. math:: T_c = e^{-2 \mu_c t}, \qquad I_c' = I_c T_c + r_{b,c}(1 - T_c)

    inside the field of view. Grey input uses :math:`\mu = 0.6`, :math:`r_b = 0.12`.

    Ceiling: the range top, :math:`s = 1`: blood over 97 % of the field, at most
    :math:`\beta(q_{0.97} - \min\phi) \approx` 9-17 green absorption lengths thick, i.e. under 1 mm of
    whole blood (:math:`\mu_a \approx 285` /cm at 540 nm for 150 g/l haemoglobin, Prahl 1999): the
    "red-out" of active bleeding, when fresh blood fills the view.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Blood volume :math:`s` (fill level of the mucosal terrain), ``[0, 1]``.
    rng : numpy.random.Generator
        Source of the pool shape.

    Returns
    -------
    numpy.ndarray
        The image with blood, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    corr = rng.uniform(0.10, 0.16) * min(h, w)
    terrain = smooth_field(rng, (h, w), corr)
    beta = rng.uniform(2.0, 4.0)
    lowest = float(terrain.min())
    level = lowest + strength * (float(np.quantile(terrain, 0.97)) - lowest)
    thickness = beta * np.maximum(level - terrain, 0.0) * field_of_view(x)
    if x.shape[2] == 3:
        mu, refl = np.array([0.12, 1.0, 0.8]), np.array([0.30, 0.03, 0.04])
    else:
        mu, refl = np.array([0.6]), np.array([0.12])
    trans = np.exp(-2.0 * mu * thickness[..., None])
    out = x * trans + refl * (1.0 - trans)
    if occlusion is not None:  # opacity of the blood layer (mean over channels)
        occlusion.append(1.0 - trans.mean(axis=2))
    return from_float(out.reshape(image.shape), image.dtype)


KNEE = 0.7
"""Linear signal (in units of the display white) above which the camera's highlight knee rolls off."""

FULL_WELL = 1.5
"""Sensor full well in units of the display white: the knee reaches the top code there; charge beyond it blooms."""


def sensor_response(s: np.ndarray) -> np.ndarray:
    """Camera response in linear light: identity below :data:`KNEE`, a smooth ``tanh`` roll-off above it.

    ``s`` is the linear signal in units of the display white. The curve has slope 1 at the knee and tends
    to 1; at the full well (:data:`FULL_WELL`, 1.5) it is within 0.3 % of 1, the top code of 8 bits.
    """
    k = KNEE
    return np.where(s <= k, s, k + (1.0 - k) * np.tanh((np.maximum(s, k) - k) / (1.0 - k)))


@register_perturbation(
    "endo_overexposure",
    modalities=("endoscopy",),
    strength_range=(0.0, 8.0),
    description="local overexposure: the wall nearest the tip blooms toward the sensor's full well (inverse-square hot spot)",
    side_effects=("saturated",), side_effect_note="blooming to the sensor's full well is the artifact",
    ceiling=4.0, ceiling_note=(
        "4 stops (16x) at the hot spot: by 1/d^2 the nearest wall at a quarter of the metered working "
        "distance (e.g. 5 mm against 20 mm), about the near end of the scope's depth of field (3-5 mm); "
        "closer, the view is a defocused red-out, not an over-exposed image"),
)
def endo_overexposure(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    r"""Local overexposure of the wall nearest the tip: a hot spot through the knee into blooming.

    **Physics.** The light guides sit next to the lens, so the mucosa is lit as :math:`\cos\theta/d^2`
    by its distance :math:`d` to the tip. The automatic exposure meters the whole frame, mostly tissue
    at the working distance :math:`D`; when the tip comes close to one part of the wall (a fold, the wall
    of a bend: usually off-centre, facing the light) that part is lit :math:`(D/d)^2` times more than
    the rest. It is over-exposed locally: the camera's highlight knee compresses it, pixels at the
    sensor's full well saturate and the excess charge spills into the neighbours (blooming), so a white
    patch with a soft halo grows while the rest of the frame keeps its exposure, or loses a little as
    the exposure control catches up (Janesick 2001; "saturation" class, Ali et al. 2020).

    **Model.** The hot spot -- the wall point nearest the tip -- is at :math:`c`, off the centre
    :math:`o` of the field of view (radius :math:`R`): :math:`|c - o| \in [0.35, 0.75]\,R` in a direction
    :math:`u` (``rng``). The near wall faces the tip at distance :math:`d_n`; a wall point seen at the
    angle :math:`\theta` from :math:`c` is at :math:`d_n/\cos\theta` and lit at
    :math:`\cos\theta/d^2 \propto \cos^3\theta`. Endoscope optics are wide-angle and close to
    :math:`f\theta` (barrel distortion), so :math:`\theta = \rho / f` with the image distance

    .. math:: \rho(x) = \sqrt{\big((x - c)\cdot u / e\big)^2 + \big((x - c)\times u\big)^2},

    the focal length :math:`f = R/\theta_{max}` for a scope of :math:`2\theta_{max}` = 120-170 degrees,
    and a stretch :math:`e \in [1, 1.5]` along :math:`u` for a wall seen obliquely (both from ``rng``).
    With :math:`s` stops of over-exposure at the spot (:math:`2^s = (D/d_n)^2`), and tissue never lit
    less than at the working distance (where the near wall ends, the rest of the scene takes over at its
    normal exposure), the exposure gain is

    .. math:: G(x) = \max\big(2^{s}\cos^3\min(\rho/f, \pi/2),\ 1\big):

    an inverse-square hot spot, 1 (unchanged) beyond it. The exposure control has caught up with a
    fraction :math:`\lambda \in [0, 0.2]` (``rng``) of the rise in the metered mean:
    :math:`a = \bar G^{-\lambda}`, :math:`\bar G` the field's mean camera output over its clean mean.
    In linear light :math:`L = I^{\gamma}` (:math:`\gamma = 2.2`, display white 1),

    .. math:: S = a\,G\,L,\quad E = \max(S - W, 0),\quad
              S' = \min\big(S + \eta\,(E * g_{\sigma_b}),\ W\big),\quad I' = r(S')^{1/\gamma},

    with the full well :math:`W = 1.5`, spill fraction :math:`\eta = 0.5`, blooming spread
    :math:`\sigma_b` = 2 % of the side, and :math:`r` the camera response (:func:`sensor_response`):
    linear up to the knee at 0.7, then a :math:`\tanh` roll-off that reaches the top code at the full
    well; the spill stays inside the field of view. The clean image's noise is scaled with its signal
    (with :math:`G` times more photons its relative shot noise would be :math:`\sqrt{G}` lower: the
    model errs on the side of keeping noise). The black surround stays black.

    Ceiling: 4 stops (16x) at the hot spot: by :math:`1/d^2` the nearest wall at a quarter of the metered
    working distance (e.g. 5 mm against 20 mm), about the near end of the scope's depth of field
    (3-5 mm); closer, the view is a defocused red-out, not an over-exposed image. A local hot spot
    within it cannot always reach the deeper levels: they are then reported with reason ``ceiling``.

    Parameters
    ----------
    image : numpy.ndarray
        RGB ``(H, W, 3)`` or grey ``(H, W)``, ``uint8``/``uint16``.
    strength : float
        Over-exposure :math:`s` in stops (EV) at the hot spot, ``[0, 8]``; ceiling 4.
    rng : numpy.random.Generator
        Source of the hot spot's position, the optics' field angle, the stretch and the exposure
        control's lag.

    Returns
    -------
    numpy.ndarray
        The overexposed image, same dtype and shape.
    """
    x = _channels(to_float(image))
    h, w = x.shape[:2]
    side = min(h, w)
    fov = field_of_view(x)
    oy, ox, big_r = disc_geometry(fov)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    off = rng.uniform(0.35, 0.75) * big_r
    focal = big_r / np.deg2rad(rng.uniform(60.0, 85.0))  # f-theta optics of a 120-170 degree scope
    stretch = rng.uniform(1.0, 1.5)
    lag = rng.uniform(0.0, 0.2)
    u = np.array([np.sin(phi), np.cos(phi)])
    cy, cx = oy + off * u[0], ox + off * u[1]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    along = (yy - cy) * u[0] + (xx - cx) * u[1]
    across = -(yy - cy) * u[1] + (xx - cx) * u[0]
    theta = np.minimum(np.hypot(along / stretch, across) / focal, np.pi / 2)
    gain = np.maximum(2.0**strength * np.cos(theta) ** 3, 1.0)
    lin = x**GAMMA
    lum = lin.mean(axis=2)
    inside = fov > 0.5
    if inside.sum() < 16:
        inside = np.ones_like(inside)
    metered = float(sensor_response(lum * gain)[inside].mean()) / max(float(lum[inside].mean()), 1e-9)
    exposure = 1.0 + (gain * max(metered, 1.0) ** -lag - 1.0) * fov  # the black surround stays black
    sig = lin * exposure[..., None]
    excess = np.maximum(sig - FULL_WELL, 0.0)
    spill = 0.5 * ndi.gaussian_filter(excess, sigma=(0.02 * side, 0.02 * side, 0.0)) * fov[..., None]
    sig = np.minimum(sig + spill, FULL_WELL)
    out = sensor_response(sig) ** (1.0 / GAMMA)
    return from_float(out.reshape(image.shape), image.dtype)
