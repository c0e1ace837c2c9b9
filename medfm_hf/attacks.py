"""White-box adversarial attacks on box-prompted segmenters: FGSM and PGD under an L-infinity budget.

Threat model (``MODELS.md``): the attacker perturbs the image in ``[0, 1]`` pixel space, *before* the model's
own preprocessing, through the same differentiable :meth:`~medfm_hf.models.base.Segmenter.forward` that
inference uses; the box prompt is fixed. The attack is untargeted: it ascends the binary cross-entropy of the
predicted foreground probabilities against the ground-truth mask,

.. math:: \\max_{\\|\\delta\\|_\\infty \\le \\epsilon,\\ 0 \\le x + \\delta \\le 1}
          \\mathrm{BCE}(f(x + \\delta, b), y).

* **FGSM** (Goodfellow et al. 2015): one step, :math:`x' = \\mathrm{clip}_{[0,1]}(x + \\epsilon\\,\\mathrm{sign}\\nabla)`.
* **PGD** (Madry et al. 2018): a uniform random start in the ε-ball (drawn from the ``torch.Generator``
  passed in), then ``steps`` signed-gradient steps of size α, each projected back onto the ε-ball and
  ``[0, 1]``. α = 2.5·ε/steps by default (Madry et al.'s choice, so that the iterate can cross the ball);
  ``step_rule="reference"`` gives the reference project's weaker α = ε/steps.

Levels 1-5: ε = 2, 4, 6, 8, 10 /255 and PGD steps 3, 5, 7, 10, 15 (:data:`ATTACK_LEVELS`).

The model is run in eval mode (its previous mode is restored afterwards), no parameter receives a gradient
(``requires_grad`` is switched off for the attack and restored), and a whole batch is attacked at once; each
image's loss is its own mean BCE, so one image's gradient does not depend on the others in the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medfm_hf.models.base import Segmenter, check_batch

logger = logging.getLogger(__name__)

#: level -> (epsilon in [0, 1] units, PGD steps)
ATTACK_LEVELS: dict[int, tuple[float, int]] = {
    1: (2 / 255, 3),
    2: (4 / 255, 5),
    3: (6 / 255, 7),
    4: (8 / 255, 10),
    5: (10 / 255, 15),
}
METHODS: tuple[str, ...] = ("fgsm", "pgd")
STEP_RULES: dict[str, float] = {"standard": 2.5, "reference": 1.0}


class AttackError(ValueError):
    """Bad input to an attack: the message says what was wrong and what to do."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack setting (what a results row records)."""

    method: str
    level: int
    epsilon: float
    steps: int
    step_size: float
    random_start: bool


def attack_spec(method: str, level: int, step_rule: str = "standard") -> AttackSpec:
    """The :class:`AttackSpec` of ``method`` (``fgsm``/``pgd``) at ``level`` 1-5 under ``step_rule``."""
    if method not in METHODS:
        raise AttackError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)}")
    if level not in ATTACK_LEVELS:
        raise AttackError(f"attack level must be one of {sorted(ATTACK_LEVELS)}, got {level!r}")
    if step_rule not in STEP_RULES:
        raise AttackError(f"step_rule must be one of {', '.join(STEP_RULES)}, got {step_rule!r}")
    eps, steps = ATTACK_LEVELS[level]
    if method == "fgsm":
        return AttackSpec("fgsm", level, eps, 1, eps, False)
    return AttackSpec("pgd", level, eps, steps, STEP_RULES[step_rule] * eps / steps, True)


def segmentation_loss(probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each image's mean BCE between probabilities and the ground-truth mask."""
    per_pixel = F.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), masks, reduction="none")
    return per_pixel.flatten(1).mean(dim=1).sum()


@contextmanager
def _attack_mode(model: Segmenter) -> Iterator[None]:
    """Eval mode, no parameter gradients; restores both afterwards."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _check_epsilon(epsilon: float) -> None:
    if not 0 <= epsilon <= 1:  # also refuses NaN
        raise AttackError(f"epsilon is an L-infinity budget in [0, 1] image units (e.g. 8/255), got {epsilon}")


def _check(model: Segmenter, images: torch.Tensor, boxes, masks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not getattr(model, "differentiable", False):
        raise AttackError(
            f"{getattr(model, 'name', type(model).__name__)} is not differentiable (e.g. GrabCut): "
            "gradient attacks do not apply to it"
        )
    check_batch(images, boxes, "attack")
    if not (images.min() >= 0 and images.max() <= 1):  # NaN fails both
        raise AttackError("attack: images must lie in [0, 1] (the attack budget is defined in that space)")
    masks_t = torch.as_tensor(masks, device=images.device).float()
    if masks_t.shape != (images.shape[0], *images.shape[-2:]):
        raise AttackError(
            f"attack: masks must have shape (B, H, W) = {(images.shape[0], *images.shape[-2:])}, got {tuple(masks_t.shape)}"
        )
    boxes_t = torch.as_tensor(boxes, dtype=torch.float32, device=images.device)
    return images.detach(), boxes_t, masks_t


def _gradient(model: Segmenter, x: torch.Tensor, boxes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = segmentation_loss(model(x, boxes), masks)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(
    model: Segmenter, images: torch.Tensor, boxes, masks, epsilon: float
) -> torch.Tensor:
    """Fast gradient sign attack: ``clip(x + epsilon * sign(grad BCE), 0, 1)``.

    Parameters
    ----------
    model
        A differentiable segmenter.
    images
        ``(B, C, H, W)`` in ``[0, 1]``.
    boxes
        ``(B, 4)`` box prompts (fixed).
    masks
        ``(B, H, W)`` ground truth (bool or 0/1).
    epsilon
        L-infinity budget in ``[0, 1]`` units (e.g. ``8 / 255``).

    Returns
    -------
    torch.Tensor
        The adversarial images, detached, same shape as ``images``.
    """
    _check_epsilon(epsilon)
    images, boxes, masks = _check(model, images, boxes, masks)
    with _attack_mode(model):
        grad = _gradient(model, images, boxes, masks)
    return (images + epsilon * grad.sign()).clamp(0, 1).detach()


def pgd(
    model: Segmenter,
    images: torch.Tensor,
    boxes,
    masks,
    epsilon: float,
    steps: int,
    *,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent (ascent on the BCE) in the L-infinity ball of radius ``epsilon``.

    Parameters
    ----------
    model, images, boxes, masks, epsilon
        As in :func:`fgsm`.
    steps
        Number of signed-gradient steps.
    step_size
        α; default ``2.5 * epsilon / steps``.
    random_start
        Start from a uniform draw in the ε-ball (needs ``generator``).
    generator
        Seeded ``torch.Generator`` (CPU) for the random start, e.g. ``torch.Generator().manual_seed(0)``.
    """
    _check_epsilon(epsilon)
    if steps < 1:
        raise AttackError(f"steps must be >= 1, got {steps}")
    if random_start and generator is None:
        raise AttackError("pgd: random_start needs a seeded generator, e.g. generator=torch.Generator().manual_seed(0)")
    alpha = 2.5 * epsilon / steps if step_size is None else float(step_size)
    images, boxes, masks = _check(model, images, boxes, masks)
    lo, hi = (images - epsilon).clamp(0, 1), (images + epsilon).clamp(0, 1)
    x = images.clone()
    if random_start:
        noise = torch.rand(images.shape, generator=generator, dtype=images.dtype, device="cpu")
        x = torch.minimum(torch.maximum(images + (2 * noise.to(images.device) - 1) * epsilon, lo), hi)
    with _attack_mode(model):
        for _ in range(steps):
            grad = _gradient(model, x, boxes, masks)
            x = torch.minimum(torch.maximum(x + alpha * grad.sign(), lo), hi).detach()
    return x


def attack(
    model: Segmenter,
    images: torch.Tensor,
    boxes,
    masks,
    method: str,
    level: int,
    *,
    step_rule: str = "standard",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run ``method`` (``fgsm``/``pgd``) at ``level`` 1-5 (:data:`ATTACK_LEVELS`); see :func:`fgsm`, :func:`pgd`."""
    spec = attack_spec(method, level, step_rule)
    if spec.method == "fgsm":
        return fgsm(model, images, boxes, masks, spec.epsilon)
    return pgd(
        model, images, boxes, masks, spec.epsilon, spec.steps, step_size=spec.step_size,
        random_start=spec.random_start, generator=generator,
    )
