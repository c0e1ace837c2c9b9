"""Arguments of ``finetune.py`` / ``medfm-robust finetune``, a dataclass parsed by ``HfArgumentParser``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from medfm_hf.finetune.strategies import STRATEGIES, StrategyOptions


@dataclass
class FinetuneArguments:
    """What ``accelerate launch finetune.py`` and ``medfm-robust finetune`` take (defaults: docs/finetune.md)."""

    model: str = field(metadata={"help": "segmenter name (medsam_lite, medsam, sam, sam_med2d)"})
    dataset: str = field(default="", metadata={"help": "benchmark folder or Hub dataset id: trains on clean/train, "
                                                        "selects on clean/validation, never reads test"})
    output: str = field(default="", metadata={"help": "output folder (resumable: a rerun continues from the last "
                                                       "checkpoint)"})
    strategy: str = field(default="decoder_only", metadata={"help": "one of " + ", ".join(STRATEGIES)})
    checkpoint: str | None = field(default=None, metadata={"help": "base weights: local file/folder or Hub id "
                                                                   "(none: random weights, for tests)"})
    model_kwargs: str = field(default="{}", metadata={"help": "JSON options of the model family, e.g. "
                                                              "'{\"size\": \"tiny\"}'"})
    # strategy options
    encoder_blocks: int = field(default=4, metadata={"help": "encoder_partial: how many last encoder blocks train"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA alpha (scale alpha/r)"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    lora_targets: str = field(default="encoder,decoder", metadata={"help": "where LoRA goes: encoder,decoder"})
    lora_encoder_pattern: str = field(default=StrategyOptions.lora_encoder_pattern,
                                      metadata={"help": "regex on Linear names inside each encoder block"})
    lora_decoder_pattern: str = field(default=StrategyOptions.lora_decoder_pattern,
                                      metadata={"help": "regex on Linear names inside the mask decoder"})
    adapter_width: int = field(default=0, metadata={"help": "adapter bottleneck width (0: block width / 4)"})
    adapter_scale: float = field(default=1.0, metadata={"help": "adapter output scale"})
    adapter_site: str = field(default="mlp", metadata={"help": "child of each encoder block the adapter sits beside"})
    # optimisation
    loss: str = field(default="bce_dice", metadata={"help": "bce_dice (w*BCE + (1-w)*soft Dice) or focal_dice "
                                                            "(20*focal + Dice, SAM-Med2D)"})
    bce_weight: float = field(default=0.3, metadata={"help": "w of bce_dice"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw or adam"})
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    lr_scheduler: str = field(default="cosine", metadata={"help": "constant, linear or cosine (after warm-up)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    epochs: int = field(default=10, metadata={"help": "epochs (ignored when --max_steps > 0)"})
    max_steps: int = field(default=0, metadata={"help": "optimizer steps (0: --epochs)"})
    max_train_seconds: float = field(default=0.0, metadata={"help": "stop after this much training time (0: no "
                                                                    "limit); the step count then varies by machine"})
    batch_size: int = field(default=4, metadata={"help": "images per process per micro-batch"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    eval_steps: int = field(default=0, metadata={"help": "validate every N optimizer steps (0: once per epoch)"})
    save_steps: int = field(default=0, metadata={"help": "write the resume checkpoint every N steps (0: at every "
                                                         "validation)"})
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16 (honoured by Accelerate)"})
    seed: int = field(default=0, metadata={"help": "seed of the sample order, augmentation and new weights"})
    image_size: int = field(default=256, metadata={"help": "training images are resized to this square size"})
    box_jitter: float = field(default=0.05, metadata={"help": "box sides move by up to this fraction of its size"})
    augment: bool = field(default=False, metadata={"help": "albumentations: flips, mild affine, brightness/contrast, "
                                                           "noise (masks and boxes move with the image)"})
    perturbation_augment: str = field(default="", metadata={"help": "calibrated perturbations as augmentation: "
                                                                    "'all' or comma-separated names"})
    perturbation_levels: str = field(default="1-3", metadata={"help": "severity levels used by "
                                                                      "--perturbation_augment"})
    perturbation_prob: float = field(default=0.5, metadata={"help": "probability that a sample is perturbed"})
    unused_parameters: str = field(default="freeze", metadata={"help": "freeze (trainable parameters that get no "
                                                                       "gradient are frozen) or find (DDP "
                                                                       "find_unused_parameters=True)"})
    num_workers: int = field(default=0, metadata={"help": "data-loader worker processes"})
    dry_run: bool = field(default=False, metadata={"help": "print the strategy table (trainable parameters per "
                                                           "strategy) and exit"})
    no_progress: bool = field(default=False, metadata={"help": "hide the progress bar"})

    def strategy_options(self) -> StrategyOptions:
        return StrategyOptions(**{f.name: getattr(self, f.name) for f in fields(StrategyOptions)})


def parse_finetune_args(argv: list[str] | None = None) -> FinetuneArguments:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(FinetuneArguments)
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args
