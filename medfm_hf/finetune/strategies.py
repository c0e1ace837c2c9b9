"""The six fine-tuning strategies, resolved per architecture through :meth:`Segmenter.trainable_groups`.

========================  ==========================================================================
strategy                  trainable parameters
========================  ==========================================================================
``full``                  every parameter
``decoder_only``          the ``mask_decoder`` group
``decoder_prompt``        ``mask_decoder`` + ``prompt_encoder``
``encoder_partial``       ``mask_decoder`` + ``prompt_encoder`` + the last ``k`` ``image_encoder.block{i}``
                          groups + ``image_encoder.neck`` (the neck sits between them and the decoder)
``lora``                  PEFT LoRA matrices only, on the encoder blocks' attention (``attn.qkv`` and
                          ``attn.proj``) **and** the mask decoder's attention (``q/k/v/out_proj``)
``adapter``               bottleneck adapters + ``mask_decoder``: the model's own adapters when its
                          ``adapters`` group is non-empty (SAM-Med2D), else one zero-initialised
                          :class:`BottleneckAdapter` inserted parallel to every encoder block's ``mlp``
========================  ==========================================================================

Nothing here names a module of a particular architecture. Which modules LoRA wraps is decided by two
regular expressions on module names *relative to their group* (``--lora_encoder_pattern``,
``--lora_decoder_pattern``), applied only to :class:`torch.nn.Linear` layers whose weight belongs to an
``image_encoder.block{i}`` group or to ``mask_decoder``; adapters go beside the child called
``--adapter_site`` (default ``mlp``) of each encoder block. The defaults fit every SAM-family layout in
the registry (transformers ``SamModel``: fused ``attn.qkv`` + ``attn.proj``; SAM-Med2D and TinyViT:
``attn.qkv`` + ``attn.proj``; all decoders: ``q_proj``/``k_proj``/``v_proj``/``out_proj``), and a
strategy that would wrap nothing raises an error listing the Linear layers that exist.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("full", "decoder_only", "decoder_prompt", "encoder_partial", "lora", "adapter")
#: attribute name of an inserted adapter inside an encoder block (its parameters' names contain it)
ADAPTER_ATTR = "ft_adapter"
#: encoder groups a strategy counts as "blocks", in order: ViT blocks, or stages (LiteMedSAM's TinyViT)
_BLOCK_RE = re.compile(r"^image_encoder\.(?:block|stage)(\d+)$")


class StrategyError(ValueError):
    """A strategy cannot be applied to this model: the message says why and what to do."""


@dataclass
class StrategyOptions:
    """The options of the strategies (defaults documented in ``docs/finetune.md``)."""

    encoder_blocks: int = 4
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "encoder,decoder"
    lora_encoder_pattern: str = r"(^|\.)attn\.(qkv|proj)$"
    lora_decoder_pattern: str = r"(^|\.)(q_proj|k_proj|v_proj|out_proj)$"
    adapter_width: int = 0  # 0: a quarter of the block width (SAM-Med2D / MSA ratio 0.25)
    adapter_scale: float = 1.0
    adapter_site: str = "mlp"


@dataclass
class StrategyPlan:
    """What a strategy made trainable: returned by :func:`apply_strategy`."""

    strategy: str
    model: nn.Module  # the segmenter, or a peft.PeftModel wrapping it (LoRA)
    trainable: dict[str, nn.Parameter]  # name (in ``model``) -> parameter
    groups: list[str]  # trainable_groups entries trained (whole)
    lora_targets: list[str] = field(default_factory=list)  # module names (in the segmenter) wrapped by LoRA
    adapter_blocks: list[str] = field(default_factory=list)  # module names that received an adapter
    adapter_width: int = 0
    total_params: int = 0

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.trainable.values())


class BottleneckAdapter(nn.Module):
    """``scale * up(GELU(down(x)))``: a bottleneck MLP added beside a block's MLP (MSA's ``MLP_Adapter`` form).

    The up-projection is zero-initialised, so a model with freshly inserted adapters computes exactly the
    pretrained function; the down-projection is seeded (``torch.Generator``), Kaiming-uniform like
    :class:`torch.nn.Linear`.
    """

    def __init__(self, dim: int, width: int, scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.down = nn.Linear(dim, width)
        self.act = nn.GELU()
        self.up = nn.Linear(width, dim)
        self.scale = float(scale)
        bound = 1.0 / dim**0.5
        with torch.no_grad():
            self.down.weight.copy_(torch.rand(self.down.weight.shape, generator=generator) * 2 * bound - bound)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.act(self.down(x)))


def _add_adapter_output(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook on a block's MLP: ``mlp(x) + adapter(x)`` (the adapter is the MLP's own child)."""
    return output + getattr(module, ADAPTER_ATTR)(inputs[0])


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def encoder_block_groups(groups: dict[str, list[nn.Parameter]]) -> list[str]:
    """The ``image_encoder.block{i}`` (ViT) or ``image_encoder.stage{i}`` (TinyViT) group names, in order."""
    found = [(int(m.group(1)), k) for k in groups if (m := _BLOCK_RE.match(k))]
    return [k for _, k in sorted(found)]


def _owner_module(model: nn.Module, params: Iterable[nn.Parameter]) -> tuple[str, nn.Module]:
    """The deepest module that holds every parameter of ``params`` (by the common prefix of their names)."""
    names = _param_names(model)
    parts = [names[id(p)].split(".")[:-1] for p in params]
    if not parts:
        raise StrategyError("an empty parameter group has no module")
    common = parts[0]
    for p in parts[1:]:
        n = 0
        while n < min(len(common), len(p)) and common[n] == p[n]:
            n += 1
        common = common[:n]
    name = ".".join(common)
    return name, model.get_submodule(name) if name else model


def insert_adapters(model: nn.Module, width: int = 0, scale: float = 1.0, site: str = "mlp", seed: int = 0,
                    ) -> tuple[list[str], int]:
    """Insert one zero-initialised :class:`BottleneckAdapter` beside the ``site`` child of every encoder block.

    The adapter becomes the child's attribute ``ft_adapter`` (new state-dict keys only; every pretrained
    key keeps its name) and is added to the child's output by a forward hook on the same input, so the
    block computes ``x + mlp(z) + adapter(z)`` with ``z`` the MLP's input.

    Returns
    -------
    (list of str, int)
        The module names that received an adapter beside them, and the width of the first adapter (widths
        follow each block's own width when ``width`` is 0: TinyViT stages differ).
    """
    groups = model.trainable_groups()
    blocks = encoder_block_groups(groups)
    gen = torch.Generator().manual_seed(int(seed))
    done: list[str] = []
    used_width = 0
    for g in blocks:
        if not groups[g]:
            continue
        name, block = _owner_module(model, groups[g])
        # the block itself, or the blocks inside a stage (TinyViT), that have a `site` child with Linear layers
        hosts = [(n, m) for n, m in block.named_modules()
                 if isinstance(getattr(m, site, None), nn.Module) and n.split(".")[-1] != site]
        for sub, host in hosts:
            child = getattr(host, site)
            linears = [m for m in child.modules() if isinstance(m, nn.Linear)]
            if not linears:
                continue  # e.g. a convolutional block
            where = ".".join(x for x in (name, sub, site) if x)
            if hasattr(child, ADAPTER_ATTR):
                raise StrategyError(f"{where} already has an inserted adapter; build a fresh model")
            dim = linears[0].in_features
            w = int(width) if width else max(1, dim // 4)
            adapter = BottleneckAdapter(dim, w, scale, gen).to(linears[0].weight.device)
            child.add_module(ADAPTER_ATTR, adapter)
            child.register_forward_hook(_add_adapter_output)
            done.append(where)
            used_width = used_width or w
    if not done:
        raise StrategyError(
            f"no encoder block of {type(model).__name__} has a child {site!r} with Linear layers to put an "
            f"adapter beside (encoder block groups: {blocks or 'none'}); pass --adapter_site NAME"
        )
    return done, used_width


def regroup_adapters(model: nn.Module, groups: dict[str, list[nn.Parameter]]) -> dict[str, list[nn.Parameter]]:
    """``groups`` with the parameters of inserted adapters moved out of their block into ``adapters``."""
    names = _param_names(model)
    inserted = {id(p) for p in model.parameters() if f".{ADAPTER_ATTR}." in "." + names[id(p)]}
    if not inserted:
        return groups
    out = {k: [p for p in v if id(p) not in inserted] for k, v in groups.items() if k != "adapters"}
    own = [p for p in groups.get("adapters", []) if id(p) not in inserted]
    out["adapters"] = own + [p for p in model.parameters() if id(p) in inserted]
    return out


def lora_target_modules(model: nn.Module, options: StrategyOptions) -> tuple[list[str], list[str]]:
    """Names of the Linear modules LoRA wraps: ``(encoder targets, decoder targets)``.

    A Linear module is an encoder target when its weight is in an ``image_encoder.block{i}`` group and its
    name relative to that block matches ``lora_encoder_pattern``; a decoder target when its weight is in
    ``mask_decoder`` and its name relative to the decoder matches ``lora_decoder_pattern``.
    """
    groups = model.trainable_groups()
    sides = {s.strip() for s in options.lora_targets.split(",") if s.strip()}
    bad = sides - {"encoder", "decoder"}
    if bad or not sides:
        raise StrategyError(f"--lora_targets must list 'encoder' and/or 'decoder', got {options.lora_targets!r}")
    try:
        enc_re, dec_re = re.compile(options.lora_encoder_pattern), re.compile(options.lora_decoder_pattern)
    except re.error as exc:
        raise StrategyError(f"a LoRA pattern is not a valid regular expression: {exc}") from exc
    scopes: list[tuple[str, set[int], str, re.Pattern]] = []
    if "encoder" in sides:
        for g in encoder_block_groups(groups):
            if groups[g]:
                prefix, _ = _owner_module(model, groups[g])
                scopes.append(("encoder", {id(p) for p in groups[g]}, prefix, enc_re))
    if "decoder" in sides:
        prefix, _ = _owner_module(model, groups["mask_decoder"])
        scopes.append(("decoder", {id(p) for p in groups["mask_decoder"]}, prefix, dec_re))
    enc: list[str] = []
    dec: list[str] = []
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, mod in linears:
        for side, ids, prefix, rx in scopes:
            if id(mod.weight) in ids:
                rel = name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else name
                if rx.search(rel):
                    (enc if side == "encoder" else dec).append(name)
                break
    for side, found, pat in (("encoder", enc, options.lora_encoder_pattern),
                             ("decoder", dec, options.lora_decoder_pattern)):
        if side in sides and not found:
            some = ", ".join(n for n, _ in linears[:12])
            raise StrategyError(
                f"LoRA {side} pattern {pat!r} matches no Linear layer of the {side} of {type(model).__name__} "
                f"(Linear layers include: {some}); pass --lora_{side}_pattern"
            )
    return enc, dec


def base_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the state dict (names, dtypes, shapes, bytes), in name order: identifies the base weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def apply_strategy(model: nn.Module, strategy: str, options: StrategyOptions | None = None, *, seed: int = 0,
                   ) -> StrategyPlan:
    """Make ``strategy``'s parameters trainable (and only them); insert adapters / wrap LoRA as needed.

    Parameters
    ----------
    model
        A :class:`~medfm_hf.models.base.Segmenter` (every parameter frozen, as ``create_segmenter`` returns it).
    strategy
        One of :data:`STRATEGIES`.
    options
        :class:`StrategyOptions`.
    seed
        Seed of the inserted adapters' down-projections.

    Returns
    -------
    StrategyPlan
        ``plan.model`` is the module to train: the segmenter itself, or a ``peft.PeftModel`` around it.
    """
    options = options or StrategyOptions()
    if strategy not in STRATEGIES:
        raise StrategyError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if not hasattr(model, "trainable_groups"):
        raise StrategyError(f"{type(model).__name__} has no trainable_groups(); it cannot be fine-tuned")
    for p in model.parameters():
        p.requires_grad_(False)
    total_before = sum(p.numel() for p in model.parameters())
    groups = model.trainable_groups()
    if not any(groups.values()):
        raise StrategyError(f"{getattr(model, 'name', type(model).__name__)} has no trainable parameters "
                            "(a classical baseline cannot be fine-tuned)")
    blocks = encoder_block_groups(groups)
    plan = StrategyPlan(strategy, model, {}, [])
    chosen: list[str]
    if strategy == "full":
        chosen = list(groups)
    elif strategy == "decoder_only":
        chosen = ["mask_decoder"]
    elif strategy == "decoder_prompt":
        chosen = ["mask_decoder", "prompt_encoder"]
    elif strategy == "encoder_partial":
        k = int(options.encoder_blocks)
        if not 1 <= k <= len(blocks):
            raise StrategyError(f"--encoder_blocks must be between 1 and the {len(blocks)} encoder blocks, got {k}")
        chosen = ["mask_decoder", "prompt_encoder", *blocks[-k:]] + (
            ["image_encoder.neck"] if "image_encoder.neck" in groups else [])
    elif strategy == "adapter":
        if not groups.get("adapters"):
            plan.adapter_blocks, plan.adapter_width = insert_adapters(
                model, options.adapter_width, options.adapter_scale, options.adapter_site, seed)
            groups = regroup_adapters(model, model.trainable_groups())
        chosen = ["adapters", "mask_decoder"]
    else:  # lora
        chosen = []
    missing = [c for c in chosen if c not in groups]
    if missing:
        raise StrategyError(f"strategy {strategy!r} needs parameter groups {missing}; "
                            f"{type(model).__name__} has {list(groups)}")
    plan.groups = chosen
    for c in chosen:
        for p in groups[c]:
            p.requires_grad_(True)
    if strategy == "lora":
        from peft import LoraConfig, get_peft_model

        enc, dec = lora_target_modules(model, options)
        plan.lora_targets = enc + dec
        config = LoraConfig(r=int(options.lora_rank), lora_alpha=float(options.lora_alpha),
                            lora_dropout=float(options.lora_dropout), target_modules=plan.lora_targets, bias="none")
        plan.model = get_peft_model(model, config)
    plan.trainable = {n: p for n, p in plan.model.named_parameters() if p.requires_grad}
    plan.total_params = sum(p.numel() for p in plan.model.parameters())
    logger.info("strategy %s: %d of %d parameters trainable (%.2f%%; base model %d)", strategy,
                plan.trainable_params, plan.total_params, 100 * plan.trainable_params / max(plan.total_params, 1),
                total_before)
    return plan
