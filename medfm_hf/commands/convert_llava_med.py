"""``medfm-robust convert-llava-med SRC DST``: original-layout LLaVA-Med -> transformers Llava folder."""

from __future__ import annotations

import argparse

NAME = "convert-llava-med"
HELP = ("Convert an original-layout LLaVA-Med checkpoint (llava_mistral, e.g. microsoft/llava-med-v1.5-mistral-7b) "
        "into a transformers LlavaForConditionalGeneration folder.")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="local folder of the original checkpoint (config.json, *.safetensors, tokenizer)")
    parser.add_argument("dst", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--vision-model", default=None,
                        help="local CLIP ViT-L/14-336 folder (openai/clip-vit-large-patch14-336); needed when SRC "
                             "has no vision tower weights")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")


def run(args: argparse.Namespace) -> int:
    from medfm_hf.vlm.convert import convert_llava_med

    out = convert_llava_med(args.src, args.dst, vision_model=args.vision_model, overwrite=args.overwrite)
    print(f"wrote {out}; use it with create_vlm('llava_med', checkpoint='{out}')")
    return 0
