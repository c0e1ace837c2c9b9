"""The task dimension of ``finetune.py`` and the options that only vision-language grounding uses.

``finetune.py`` parses :class:`~medfm_hf.finetune.args.FinetuneArguments` (shared: model, dataset, output,
LoRA rank/alpha/dropout, optimiser, schedule, batch, accumulation, evaluation/saving cadence, mixed precision,
seed, ``--perturbation_augment``) together with :class:`VLMGroundingArguments`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: LoRA on the language model only: every attention and MLP projection under ``language_model``. A plain
#: ``["q_proj", "v_proj", ...]`` list would also match the vision tower's attention (same names).
LM_PATTERN = r".*language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
#: LoRA on the vision tower's encoder blocks (SigLIP in Gemma 3, CLIP in LLaVA), when asked for.
VISION_PATTERN = r".*vision_tower\..*encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))"
#: the multimodal projector (trained fully when asked for: Gemma 3's is a bare matrix, not a Linear)
PROJECTOR_MODULE = "multi_modal_projector"
LORA_MODULES = ("language_model", "projector", "vision_tower")
TASKS = ("segmentation", "grounding")


@dataclass
class VLMGroundingArguments:
    """Options of ``finetune.py --task grounding`` (the other ``finetune.py`` options are shared)."""

    task: str = field(default="segmentation", metadata={"help": "segmentation (segmenters) or grounding "
                                                                "(vision-language models: medgemma, llava_med, hf)"})
    vlm_lora_modules: str = field(default="language_model", metadata={
        "help": "grounding: where LoRA goes, comma-separated from language_model, projector (trained fully), "
                "vision_tower"})
    vlm_lm_pattern: str = field(default=LM_PATTERN, metadata={"help": "grounding: regex (full match on module "
                                                                      "paths) of the language-model LoRA targets"})
    vlm_vision_pattern: str = field(default=VISION_PATTERN, metadata={"help": "grounding: regex of the vision-tower "
                                                                              "LoRA targets"})
    vlm_dtype: str = field(default="", metadata={"help": "grounding: dtype of the frozen base weights: bfloat16 or "
                                                         "float32 ('' = bfloat16 on CUDA, float32 on CPU); float16 is "
                                                         "refused for Gemma 3"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "grounding: recompute activations in "
                                                                          "the backward pass (less memory)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "grounding: gradient clipping norm (0: none)"})
    max_new_tokens: int = field(default=48, metadata={"help": "grounding: generation budget of the validation "
                                                              "answers"})
