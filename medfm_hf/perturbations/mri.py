"""MRI artifacts, simulated where their physics lives: in k-space (and, for the bias field, in the coil's
receive sensitivity).

The displayed image is taken as the magnitude of a real, non-negative object
:math:`x \\in [0, 1]`; its k-space is :math:`K = \\mathcal F x` (2-D DFT, rows and columns the two
in-plane encoding directions). The phase-encode axis (0 = rows, 1 = columns) is drawn from ``rng``.
The corrupted k-space is transformed back and its **magnitude** displayed, as on a scanner. Colour
inputs are processed channel by channel with the same draws.

References: Zhuo & Gullapalli, "MR artifacts, safety, and quality control", RadioGraphics 26 (2006)
275-297; Bernstein, King & Zhou, *Handbook of MRI Pulse Sequences*, Elsevier 2004; Pérez-García et al.,
"TorchIO", Comput. Methods Programs Biomed. 208 (2021) 106236 (its ``RandomGhosting``,
``RandomMotion``, ``RandomSpike``, ``RandomBiasField`` are the models followed here, re-derived; the
ghosting is generalised to a fluctuation about the mean signal, see :func:`mri_ghosting`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.polynomial import legendre
from scipy import ndimage as ndi

from medfm_hf.perturbations._common import keep_quantum_noise
from medfm_hf.perturbations.registry import from_float, register_perturbation, to_float


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a float ``(H, W) -> (H, W)`` function to a grey image or to every channel of an RGB one."""
    x = to_float(image)
    if x.ndim == 2:
        out = fn(x)
    else:
        out = np.stack([fn(x[..., c]) for c in range(x.shape[2])], axis=2)
    return from_float(out, image.dtype)


def kspace_index(n: int) -> np.ndarray:
    """Signed integer k-space line indices of an ``n``-point DFT (``fftfreq`` order), -n/2 .. n/2-1."""
    return np.rint(np.fft.fftfreq(n) * n).astype(int)


# ----------------------------------------------------------------------------------------------------
# bias field
# ----------------------------------------------------------------------------------------------------

BIAS_ORDER = 3


def bias_log_field(shape: tuple[int, int], coefficients: np.ndarray) -> np.ndarray:
    """Smooth log-field :math:`f = \\sum_{i+j \\le d} c_{ij} P_i(u) P_j(v)` normalised to max |f| = 1.

    ``coefficients`` is a ``(d+1, d+1)`` array (entries with ``i + j > d`` are ignored); ``P`` are
    Legendre polynomials on :math:`u, v \\in [-1, 1]`.
    """
    d = coefficients.shape[0] - 1
    c = np.where(np.add.outer(np.arange(d + 1), np.arange(d + 1)) <= d, coefficients, 0.0)
    u = np.linspace(-1.0, 1.0, shape[0])
    v = np.linspace(-1.0, 1.0, shape[1])
    f = legendre.leggrid2d(u, v, c)
    f -= f.mean()
    peak = np.abs(f).max()
    return f / peak if peak > 0 else f


@register_perturbation(
    "mri_bias_field",
    modalities=("mri",),
    strength_range=(0.0, 6.0),
    description="receive-coil bias field: smooth multiplicative intensity non-uniformity",
    ceiling=1.2, ceiling_note="peak log-gain 1.2 (a factor 3.3 either way): phased-array surface-coil profiles at 3 T before intensity normalisation (Sled et al. 1998)",
)
def mri_bias_field(
    image: np.ndarray, strength: float, rng: np.random.Generator, fov: np.ndarray | None = None
) -> np.ndarray:
    """Intensity non-uniformity (bias field) from coil sensitivity and B1 inhomogeneity.

    Physics: the receive coil's sensitivity (and the transmit field's inhomogeneity at high field) varies
    smoothly over the field of view, multiplying the true signal by a slowly varying field
    (Sled, Zijdenbos & Evans, "A nonparametric method for automatic correction of intensity
    nonuniformity in MRI data", IEEE TMI 17 (1998) 87-97). In k-space this is a convolution with a
    narrow kernel: only low spatial frequencies are involved.

    Model: :math:`x' = x \\exp(s f)`, :math:`f` a degree-3 Legendre polynomial field with coefficients
    :math:`c_{ij} \\sim \\mathcal N(0, 1)` (drawn from ``rng``), zero mean, :math:`\\max|f| = 1`.
    ``strength`` :math:`s` is the peak log-gain (s = 1: the field spans a factor :math:`e^{\\pm 1}`).

    The reconstruction scales the magnitude image into the stored range, so a gain above 1 does not
    clip: if the field raises the maximum, the image is scaled back to the clean maximum. The thermal
    receiver noise is not multiplied by the field (it is uniform over the image), so where the field
    lowers the signal the noise keeps its level: the noise the gain removed is put back as white noise
    inside the body (:func:`~medfm_hf.perturbations._common.keep_quantum_noise`).

    Severity: SSIM is insensitive to smooth gain changes (its structure term is invariant to them).
    Within the physical ceiling :math:`s \\le 1.2` (a factor 3.3 either way, surface-coil profiles at
    3 T) levels 4-5 are out of reach on most images and level 3 on some: they are reported as
    ``reason = "ceiling"``, not bought with a x400 gain and clipping as before.

    Ceiling: :math:`s \\le 1.2`, a peak log-gain of 1.2 (a factor 3.3 either way): the intensity
    non-uniformity of phased-array surface coils at 3 T before intensity normalisation (Sled et al. 1998).
    """
    coeffs = rng.standard_normal((BIAS_ORDER + 1, BIAS_ORDER + 1))
    field = np.exp(strength * bias_log_field(image.shape[:2], coeffs))
    z = rng.standard_normal(image.shape[:2])
    region = None if fov is None or fov.sum() < 16 else np.asarray(fov, bool)

    def fn(x: np.ndarray) -> np.ndarray:
        y = x * field
        # the reconstruction scales the magnitude image into the stored range: nothing clips
        top, y_top = float(x.max()), float(y.max())
        y = y * (top / y_top) if y_top > top > 0 else y
        # thermal receiver noise is not shaped by the coil sensitivity: its level stays
        return np.abs(keep_quantum_noise(x, y, z, region))  # magnitude image: Rician, never negative

    return _per_channel(image, fn)


# ----------------------------------------------------------------------------------------------------
# ghosting
# ----------------------------------------------------------------------------------------------------


def ghost_kspace(x: np.ndarray, period: int, offset: int, axis: int, ghost: complex) -> np.ndarray:
    """Magnitude image of ``x`` acquired with a signal fluctuating with a period of ``period`` lines.

    The phase-encode line :math:`k` is acquired with the complex gain
    :math:`g_k = 1 + \\gamma\\,(N c_k - 1)`, :math:`c_k = 1` on the lines
    :math:`k \\equiv \\text{offset} \\pmod N` and 0 elsewhere, :math:`\\gamma` = ``ghost``. The gains
    average to 1 over a period, so the image is the clean object (the time-averaged signal, at its full
    intensity) plus :math:`N - 1` replicas shifted by :math:`j`\\,FOV/N along ``axis``, each of complex
    amplitude :math:`\\gamma\\,e^{-2\\pi i j\\,\\text{offset}/N}` relative to the object (the harmonics
    of the fluctuation).
    """
    k = np.fft.fft2(x)
    idx = kspace_index(x.shape[axis])
    comb = ((idx - offset) % period == 0).astype(np.float64)
    gain = 1.0 + ghost * (period * comb - 1.0)
    shape = [1, 1]
    shape[axis] = -1
    return np.abs(np.fft.ifft2(k * gain.reshape(shape)))


def draw_ghost_params(rng: np.random.Generator) -> tuple[int, int, int]:
    """(period N in 2..3, line offset in 0..N-1, phase-encode axis) drawn from ``rng``."""
    period = int(rng.integers(2, 4))
    offset = int(rng.integers(0, period))
    axis = int(rng.integers(0, 2))
    return period, offset, axis


@register_perturbation(
    "mri_ghosting",
    modalities=("mri",),
    strength_range=(0.0, 2.0),
    description="periodic signal fluctuation between phase-encode lines: ghost replicas at FOV/N along the phase-encode axis",
    ceiling=1.0,
    ceiling_note="fluctuation <= 100 % of the mean signal (line gains within 0-2 of the mean; the replicas "
    "together as bright as the parent): pulsatile inflow from saturated to fresh blood, a 90 degree odd/even "
    "echo phase error of uncorrected EPI (Wood & Henkelman 1985; Xiang & Henkelman 1992)",
)
def mri_ghosting(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Ghosting from a periodic fluctuation of the signal between phase-encode lines.

    Physics: any signal change that repeats every :math:`N` phase-encode lines -- respiratory or cardiac
    motion synchronised with the repetition, pulsatile flow, alternating echo timing in EPI (N/2 or
    Nyquist ghost), vibrations, view-to-view instability -- modulates k-space periodically along the
    phase-encode direction. A modulation of period :math:`N` in :math:`k` splits the image into its
    harmonics: the time-averaged object stays in place (the parent) and the fluctuation's harmonics
    appear as replicas displaced by multiples of FOV/N along the phase-encode axis only, each with the
    amplitude and phase of its harmonic (Wood & Henkelman, "MR image artifacts from periodic motion",
    Med. Phys. 12 (1985) 143; Xiang & Henkelman, "Dynamic image reconstruction: MR movies from motion
    ghosts", JMRI 2 (1992) 679; Reeder et al., "Quantification and reduction of ghosting artifacts in
    interleaved echo-planar imaging", MRM 38 (1997) 429 -- amplitude and phase discontinuities
    between lines; Zhuo & Gullapalli 2006).

    Model: line :math:`k` is acquired with the complex gain :math:`1 + \\gamma (N c_k - 1)`,
    :math:`c_k = 1` on the lines :math:`k \\equiv k_0 \\pmod N`: one line in :math:`N` deviates in
    amplitude and phase, the gains average to 1 (:func:`ghost_kspace`). The parent is the clean image at
    its full intensity -- with its texture and noise -- and each of the :math:`N - 1` replicas has the
    amplitude :math:`|\\gamma|` relative to it; the phase :math:`\\psi = \\arg\\gamma` sets whether a
    replica adds to (0), subtracts from (:math:`\\pi`) or adds in quadrature to (:math:`\\pm\\pi/2`,
    a small phase error) the tissue it overlies. Drawn from ``rng``: :math:`N \\in \\{2, 3\\}`,
    :math:`k_0`, the phase-encode axis, :math:`\\psi \\sim U(0, 2\\pi)`. ``strength`` :math:`s` is the
    fluctuation's amplitude relative to the mean signal, :math:`s = \\max_k |g_k - 1| = (N - 1)|\\gamma|`:
    the replicas together have the amplitude :math:`s` relative to the parent (each :math:`s/(N-1)`).

    Not a pure phase error applied to the whole clean image (the model before): a unit-modulus
    modulation keeps the total energy (Parseval), so the replicas took their energy from the parent,
    which fell to :math:`|1 + (e^{i\\phi} - 1)/N|` = 51-60 % of its amplitude at the old level 5 on the
    demo MR slices (26-35 % of its energy, texture and noise with it); where the replicas landed on
    background rather than on the body (3 of the 6 frames) the high-pass energy inside the body fell to
    52-62 % of the clean one. Interpolation, clipping and FFT conventions played no part (no new
    saturated or black pixels; the round trip at zero strength is exact). For a small phase error
    :math:`\\phi` both models agree to first order (:math:`e^{i\\phi} \\approx 1 + i\\phi`, a replica in
    quadrature); they differ by the parent's :math:`O(\\phi^2)` loss, which here stays in the mean.

    Ceiling: :math:`s \\le 1`, a fluctuation of 100 % of the mean signal (line gains between 0 and 2
    times the mean; the replicas together as bright as the parent): the whole object's signal vanishing
    on the deviant lines, or doubling, as pulsatile inflow does between saturated and fresh blood; for
    N = 2 it is a 90 degree odd/even echo phase error of an uncorrected EPI scan. A larger fluctuation
    would need a whole-object signal beyond twice its mean, or below zero, on some lines; the range goes
    on to 2 only as the model's domain. Within the ceiling level 4 is out of reach on 2 and level 5 on 5
    of the 6 demo MR slices (``reason = "ceiling"``).
    """
    period, offset, axis = draw_ghost_params(rng)
    psi = float(rng.uniform(0.0, 2.0 * np.pi))
    ghost = strength / (period - 1) * np.exp(1j * psi)
    return _per_channel(image, lambda x: ghost_kspace(x, period, offset, axis, ghost))


# ----------------------------------------------------------------------------------------------------
# motion
# ----------------------------------------------------------------------------------------------------


def motion_kspace(
    x: np.ndarray,
    shot: np.ndarray,
    angles_deg: np.ndarray,
    shifts: np.ndarray,
    axis: int,
) -> np.ndarray:
    """Magnitude image whose phase-encode lines come from rigidly moved copies of ``x``.

    ``shot[i]`` is the shot (acquisition segment) of DFT line ``i`` along ``axis``; during shot ``j`` the
    object is rotated by ``angles_deg[j]`` about the centre and translated by ``shifts[j]`` (rows, cols,
    pixels). Translation is applied exactly, as a k-space phase ramp.
    """
    ky = np.fft.fftfreq(x.shape[0])[:, None]
    kx = np.fft.fftfreq(x.shape[1])[None, :]
    out = np.zeros(x.shape, dtype=np.complex128)
    for j in range(len(angles_deg)):
        lines = shot == j
        if not lines.any():
            continue
        moved = x if angles_deg[j] == 0 else ndi.rotate(x, angles_deg[j], reshape=False, order=1, mode="constant")
        k = np.fft.fft2(moved) * np.exp(-2j * np.pi * (ky * shifts[j][0] + kx * shifts[j][1]))
        if axis == 0:
            out[lines, :] = k[lines, :]
        else:
            out[:, lines] = k[:, lines]
    return np.abs(np.fft.ifft2(out))


def motion_trajectory(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random smooth rigid-motion trajectory ``(len(times), 3)``: rotation, row shift, column shift.

    Each component is a linear drift plus three sinusoids with random frequencies (0.5-3 cycles per
    acquisition), amplitudes and phases, shifted to 0 at ``times[0]`` and scaled to a peak of 1.
    """
    t = np.asarray(times, dtype=np.float64)[:, None]
    drift = rng.uniform(-1.0, 1.0, size=(1, 3))
    amp = rng.uniform(-1.0, 1.0, size=(3, 3))
    freq = rng.uniform(0.5, 3.0, size=(3, 3))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(3, 3))
    m = drift * t + sum(amp[h] * np.sin(2.0 * np.pi * freq[h] * t + phase[h]) for h in range(3))
    m = m - m[:1]
    peak = np.abs(m).max(axis=0, keepdims=True)
    return m / np.where(peak > 0, peak, 1.0)


def registration_shift(clean: np.ndarray, moved: np.ndarray, reach: int) -> tuple[int, int]:
    """Whole-pixel displacement ``(rows, cols)`` of ``moved`` relative to ``clean``: the circular
    cross-correlation peak searched within ``reach`` pixels (ghost replicas sit farther away, at FOV/N)."""
    a = clean.astype(np.float64)
    b = moved.astype(np.float64)
    if a.ndim == 3:
        a, b = a.mean(axis=2), b.mean(axis=2)
    a, b = a - a.mean(), b - b.mean()
    xc = np.real(np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a))))
    h, w = xc.shape
    best, arg = -np.inf, (0, 0)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            v = xc[dy % h, dx % w]
            if v > best or (v == best and abs(dy) + abs(dx) < abs(arg[0]) + abs(arg[1])):
                best, arg = v, (dy, dx)
    return arg


@register_perturbation(
    "mri_motion",
    modalities=("mri",),
    strength_range=(0.0, 20.0),
    description="rigid patient motion during acquisition: k-space segments from moved copies",
    ceiling=10.0,
    ceiling_note="peak displacement <= 10 px and 10 degrees: ~10 mm at the demo's 256 px over a 250 mm head "
    "FOV (16 mm over a 400 mm abdominal one), the gross motion of an uncooperative patient or the "
    "respiratory excursion of free breathing (Zaitsev et al. 2015); cooperating patients move a few mm; "
    "resolution dependent: pixels at 256 px",
    side_effects=("smoothing",), side_effect_note="k-space segments from moved copies average the fine detail",
)
def mri_motion(
    image: np.ndarray, strength: float, rng: np.random.Generator, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Motion artifact: blurring and ghosting from rigid movement between phase-encode lines.

    Physics: k-space is filled line by line (or shot by shot in segmented sequences) over seconds to
    minutes; if the patient moves, successive segments of k-space are samples of differently positioned
    objects. Their inconsistency appears as blurring and as ghost-like replicas smeared along the
    phase-encode direction (Zaitsev, Maclaren & Herbst, "Motion artifacts in MRI: a complex problem
    with many partial solutions", JMRI 42 (2015) 887-901; Shaw et al., "MRI k-space motion artefact
    augmentation", MIDL 2019).

    Model: a segmented (multi-shot) acquisition with :math:`S \\sim U\\{4..16\\}` shots and interleaved
    ordering -- shot :math:`j` acquires the lines :math:`k \\equiv j \\pmod S`, as in multi-shot turbo
    spin echo -- so every shot samples all of k-space. During shot :math:`j` the object is rotated by
    :math:`s\\,m_\\theta(t_j)` degrees and translated by :math:`s\\,(m_y(t_j), m_x(t_j))` pixels, where
    :math:`m` is a smooth random trajectory over the acquisition (drift + three sinusoids per component,
    peak 1, see :func:`motion_trajectory`) that is zero for the shot holding the k-space centre; the
    other shots are inconsistent with it. Shot count, trajectory and phase-encode axis are drawn from
    ``rng``. ``strength`` :math:`s` is the peak displacement (degrees and pixels).

    Labels follow the displayed anatomy: the frame is the average of the moved copies plus ghosts, and
    where it sits depends on how the shots cluster along the trajectory (0-4 px at strength 8 on the
    demo MR slices). The mask is shifted by the whole-pixel displacement of the displayed anatomy, the
    cross-correlation peak between the clean and the perturbed frame searched within
    ``ceil(s) + 2`` pixels (:func:`registration_shift`; ghosts sit farther, at FOV/N). Tested both
    ways: where the anatomy stays the mask stays, where it moves the moved mask covers the lesion
    better than the old one.

    Ceiling: :math:`s \\le 10` (px and degrees): at the demo's 256 px that is ~10 mm over a 250 mm
    head FOV or ~16 mm over a 400 mm abdominal one -- the gross motion of an uncooperative (paediatric,
    confused, claustrophobic) patient or the 1-2 cm respiratory excursion of free breathing, while
    cooperating patients stay within a few mm (Zaitsev et al. 2015); motion bad enough to repeat a
    sequence is common, about one clinical examination in five (Andre et al., "Toward quantifying the
    prevalence, severity, and cost associated with patient motion during clinical MR examinations",
    JACR 12 (2015) 689). The value is in pixels, so it depends on the resolution (10 px at 512 px is
    half the displacement in mm). Every level is reached within it on the 6 demo MR frames (level 5 at
    2.5-10 px).
    """
    n_shots = int(rng.integers(4, 17))
    axis = int(rng.integers(0, 2))
    shot = kspace_index(image.shape[axis]) % n_shots
    times = (np.arange(n_shots) + 0.5) / n_shots
    traj = motion_trajectory(times, rng)  # zero at shot 0, which holds k = 0
    angles = strength * traj[:, 0]
    shifts = strength * traj[:, 1:]
    out = _per_channel(image, lambda x: motion_kspace(x, shot, angles, shifts, axis))
    moved = None
    if mask is not None:
        dy, dx = registration_shift(image, out, int(np.ceil(strength)) + 2)
        moved = ndi.shift(np.asarray(mask, dtype=np.uint8), (dy, dx), order=0, mode="constant") > 0
    return out, moved


# ----------------------------------------------------------------------------------------------------
# spike
# ----------------------------------------------------------------------------------------------------


def spike_kspace(x: np.ndarray, positions: np.ndarray, phases: np.ndarray, amplitude: float) -> np.ndarray:
    """Magnitude image after adding spikes of ``amplitude`` x k-space DC at signed ``positions`` (ky, kx)."""
    k = np.fft.fft2(x)
    dc = np.abs(k[0, 0])
    for (py, px), ph in zip(positions, phases):
        k[py % x.shape[0], px % x.shape[1]] += amplitude * dc * np.exp(1j * ph)
    return np.abs(np.fft.ifft2(k))


def draw_spike_positions(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """1-2 spike positions (signed k-space indices) at 10-45 % of the maximum frequency, and phases."""
    n = int(rng.integers(1, 3))
    radius = rng.uniform(0.10, 0.45, size=n)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    py = np.rint(radius * np.sin(angle) * shape[0] / 2).astype(int)
    px = np.rint(radius * np.cos(angle) * shape[1] / 2).astype(int)
    px[(py == 0) & (px == 0)] = 1
    phases = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return np.stack([py, px], axis=1), phases


@register_perturbation(
    "mri_spike",
    modalities=("mri",),
    strength_range=(0.0, 1.0),
    description="k-space spike (bad data point): herringbone stripes over the whole image",
    ceiling=1.0,
    ceiling_note="spike <= the k-space centre: the receiver gain is set at prescan so that the echo peak "
    "(the k-space centre) nearly fills the ADC's range, and a spike, digitised by the same ADC, clips at "
    "full scale; the range ends there",
)
def mri_spike(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Spike (herringbone / corduroy) artifact.

    Physics: an electrostatic discharge, arcing of a loose gradient-coil contact or a faulty receiver
    corrupts one or a few k-space samples with a large value. A single point in k-space is a plane wave
    in the image, so the whole image is overlaid with stripes whose spacing and orientation are set by
    the spike's position (Zhuo & Gullapalli 2006; Jin et al., "MRI artifact correction using sparse +
    low-rank decomposition of annihilating filter-based Hankel matrix", MRM 78 (2017) 327).

    Model: 1-2 spikes at :math:`|k| \\sim U(0.1, 0.45) k_{max}`, random direction and phase (drawn from
    ``rng``), each of magnitude :math:`s\\,|K(0)|`, i.e. an added complex sinusoid of amplitude
    :math:`s\\,\\bar x` in the image. ``strength`` :math:`s` is the spike relative to the k-space centre.

    Ceiling: :math:`s \\le 1`, a spike as large as the k-space centre: the prescan sets the receiver
    gain so that the echo peak (the k-space centre, the largest sample of a normal acquisition) nearly
    fills the analogue-to-digital converter's range; a spike is digitised by the same converter and
    clips at its full scale. The range ends there.
    """
    positions, phases = draw_spike_positions(image.shape[:2], rng)
    return _per_channel(image, lambda x: spike_kspace(x, positions, phases, strength))


# ----------------------------------------------------------------------------------------------------
# Gibbs truncation
# ----------------------------------------------------------------------------------------------------


def truncation_window(n: int, keep: float) -> np.ndarray:
    """1-D k-space window keeping ``keep`` (fraction, 0-1] of the lines around the centre.

    The cut-off :math:`k_c = \\text{keep}\\cdot (n/2 + 1)` is continuous: line :math:`k` has weight
    :math:`\\mathrm{clip}(k_c - |k|, 0, 1)`, so the boundary line is weighted by the fractional part and the
    image changes continuously with ``keep``; ``keep = 1`` keeps every line with weight 1.
    """
    kc = keep * (n / 2.0 + 1.0)
    return np.clip(kc - np.abs(np.fft.fftfreq(n) * n), 0.0, 1.0)


@register_perturbation(
    "mri_gibbs",
    modalities=("mri",),
    strength_range=(0.0, 0.99),
    description="k-space truncation: Gibbs ringing at sharp edges (and blurring)",
    ceiling=0.75,
    ceiling_note="at least 25 % of the phase-encode lines kept: 64 of 256, the 64x64 EPI matrix of fMRI, ASL "
    "and perfusion is the coarsest clinical anatomical matrix, displayed interpolated to 256 px; "
    "a fraction of the image's own lines (resolution dependent)",
    side_effects=("smoothing",), side_effect_note="k-space truncation is a low-pass: fine detail and noise go with it",
)
def mri_gibbs(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Gibbs (truncation) ringing.

    Physics: only a finite central part of k-space is acquired (matrix size). Truncating the Fourier
    series of a sharp edge gives the Gibbs phenomenon: oscillations parallel to edges with ~9 %
    overshoot and a period of two reconstructed pixels of the acquired matrix, plus loss of resolution
    (Czervionke et al., "Characteristic features of MR truncation artifacts", AJR 151 (1988) 1219-1228;
    Kellner et al., "Gibbs-ringing artifact removal based on local subvoxel-shifts", MRM 76 (2016) 1574).

    Model: k-space multiplied by a separable box window keeping a fraction :math:`1 - s` of the
    phase-encode lines and :math:`1 - a s` of the readout lines, :math:`a \\sim U(0.3, 1)` (scanners
    usually truncate phase encoding more); phase-encode axis and :math:`a` drawn from ``rng``.
    ``strength`` :math:`s` is the fraction of the phase-encode lines removed. The range ends at
    :math:`s = 0.99`: at 256 lines that keeps ~1.3 phase-encode lines, and going further would start
    removing the centre of k-space itself (a signal loss, not truncation). Far below that, with fewer
    than ~20 lines kept, the artifact is mostly blurring rather than ringing.

    Ceiling: :math:`s \\le 0.75`, at least a quarter of the lines kept: 64 of the 256 lines of the demo's
    frames, the 64 x 64 matrix of the echo-planar fMRI, arterial spin labelling and perfusion scans, the
    coarsest matrix of clinical images, displayed interpolated to 256 px (structural scans use 192-512
    lines). The fraction refers to the image's own lines: an image already resized up from a coarser
    matrix keeps its acquired lines under a truncation that spares them, so the same ceiling is a milder
    artifact there. Three of the 6 demo MR frames are crops of 64 x 64 DICOM images (45-64 acquired lines
    resized to 256 px): within the ceiling level 1 is reached on 4 frames and level 2 on 1, levels 3-5
    on none (``reason = "ceiling"``); they needed 80-98 % of the lines removed (5-51 of 256 lines).
    """
    axis = int(rng.integers(0, 2))
    ratio = float(rng.uniform(0.3, 1.0))
    keep = [1.0 - ratio * strength, 1.0 - ratio * strength]
    keep[axis] = 1.0 - strength
    wy = truncation_window(image.shape[0], keep[0])
    wx = truncation_window(image.shape[1], keep[1])
    window = wy[:, None] * wx[None, :]
    return _per_channel(image, lambda x: np.abs(np.fft.ifft2(np.fft.fft2(x) * window)))
