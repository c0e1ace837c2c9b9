"""Tiny random vision-language models built in-process (tests and benchmarks; nothing is downloaded).

The models are real transformers classes (``Gemma3ForConditionalGeneration``,
``LlavaForConditionalGeneration``) with a few thousand parameters, driven by real processors
(``Gemma3Processor``, ``LlavaProcessor``) around a byte-level BPE tokenizer trained here on a handful of
sentences. They exercise the exact code paths the full-size checkpoints use (chat template, image-token
expansion, ``token_type_ids``, left padding, ``generate``), only with random weights, so their *answers*
are noise; ``reasoning=True`` lets a test force a MedGemma 1.5 style reasoning block.
"""

from __future__ import annotations

import torch

# Gemma 3 special tokens (the text forms of the real checkpoint's tokenizer).
GEMMA_SPECIALS: tuple[str, ...] = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<unused94>",
    "<unused95>",
)
# Mistral / LLaVA special tokens; ``<image>`` and ``<pad>`` are the two the LLaVA converter adds.
LLAMA_SPECIALS: tuple[str, ...] = ("<unk>", "<s>", "</s>")

_CORPUS = [
    "What is shown in this image? Answer with one word.",
    "The chest X-ray shows no acute findings. A: normal B: pneumonia C: effusion",
    "Locate the lesion and give the bounding box as [x0, y0, x1, y1].",
    "user model system [INST] [/INST] thought answer yes no left right lung heart liver",
    "0 1 2 3 4 5 6 7 8 9 , . : ; ( ) [ ] { } \" ' - _ / \n\n",
]

# A Gemma 3 style chat template (the real one has the same turn markers; the system text is prefixed to
# the first user turn, images are written as <start_of_image>, which the processor expands).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set first = true -%}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}"
    "{%- for c in m['content'] -%}{%- if c['type'] == 'text' -%}{%- set ns.system = ns.system + c['text'] + '\n\n' -%}{%- endif -%}{%- endfor -%}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\n' }}"
    "{%- if m['role'] == 'user' -%}{{ ns.system }}{%- set ns.system = '' -%}{%- endif -%}"
    "{%- if m['content'] is string -%}{{ m['content'] }}{%- else -%}"
    "{%- for c in m['content'] -%}"
    "{%- if c['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif c['type'] == 'text' -%}{{ c['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def build_tokenizer(specials: tuple[str, ...], vocab_size: int = 320, add_bos: bool = False, **named):
    """A byte-level BPE ``PreTrainedTokenizerFast`` trained on a few sentences.

    ``specials`` get the first ids in order; ``named`` maps attribute names (``bos_token=...``) to them,
    and any other ``*_token`` name (``boi_token``, ``image_token``) becomes a model-specific special token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    if add_bos:  # Llama/Mistral tokenizers prepend BOS
        bos = named["bos_token"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    standard = {"bos_token", "eos_token", "unk_token", "pad_token"}
    std = {k: v for k, v in named.items() if k in standard}
    extra = {k: v for k, v in named.items() if k not in standard}
    return PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=extra or None, **std)


def tiny_gemma3(seed: int = 0, image_size: int = 32, tokens_per_image: int = 4, hidden: int = 32):
    """A random ``Gemma3ForConditionalGeneration`` and its ``Gemma3Processor`` (fp32, CPU, eval mode)."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    tokenizer = build_tokenizer(
        GEMMA_SPECIALS,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        boi_token="<start_of_image>",
        eoi_token="<end_of_image>",
        image_token="<image_soft_token>",
    )
    tokenizer.padding_side = "left"
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in GEMMA_SPECIALS}
    patch = image_size // int(tokens_per_image**0.5) // 2  # 2x2 pooled patches per image token side
    config = Gemma3Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=64,
            layer_types=["sliding_attention", "full_attention"],
            max_position_embeddings=512,
            pad_token_id=ids["<pad>"],
            eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
            bos_token_id=ids["<bos>"],
        ),
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
        ),
        mm_tokens_per_image=tokens_per_image,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers starts the image projection at zero: the model would ignore every image
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(
            0.0, hidden**-0.5, generator=torch.Generator().manual_seed(seed))
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.eos_token_id = [ids["<eos>"], ids["<end_of_turn>"]]
    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=GEMMA_CHAT_TEMPLATE,
        image_seq_length=tokens_per_image,
    )
    return model, processor


def tiny_llava_parts(seed: int = 0, image_size: int = 28, patch: int = 14, hidden: int = 32):
    """The three parts of an original-layout LLaVA(-Med) model: a random ``MistralForCausalLM``, a random
    ``CLIPVisionModel`` and the ``mlp2x_gelu`` projector (``Sequential(Linear, GELU, Linear)``), plus a
    Llama-style tokenizer *without* the ``<image>``/``<pad>`` tokens (the converter adds them)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, MistralConfig, MistralForCausalLM

    tokenizer = build_tokenizer(LLAMA_SPECIALS, add_bos=True, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    text = MistralForCausalLM(
        MistralConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=512,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=False,
            sliding_window=None,
        )
    ).eval()
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
            projection_dim=hidden,
        )
    ).eval()
    projector = torch.nn.Sequential(
        torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden)
    ).eval()
    return text, vision, projector, tokenizer


def tiny_llava(seed: int = 0, image_size: int = 28, patch: int = 14, hidden: int = 32):
    """A random ``LlavaForConditionalGeneration`` (Mistral LM + CLIP tower, LLaVA-Med layout after
    conversion) and its ``LlavaProcessor``."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    text, vision, _, tokenizer = tiny_llava_parts(seed, image_size, patch, hidden)
    tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    tokenizer.padding_side = "left"
    config = LlavaConfig(
        text_config=text.config.to_dict(),
        vision_config=vision.config.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=(image_size // patch) ** 2,
    )
    config.text_config.vocab_size = len(tokenizer)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    processor = LlavaProcessor(
        image_processor=clip_image_processor(image_size),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    return model, processor


def clip_image_processor(image_size: int):
    """A ``CLIPImageProcessor`` with the OpenAI CLIP mean/std at ``image_size`` (shortest side + crop)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
