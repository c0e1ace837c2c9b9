"""The LLaVA-Med converter: an original-layout checkpoint (``llava_mistral``) becomes a transformers
``LlavaForConditionalGeneration`` whose logits equal the original model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from medfm_hf.cli import main
from medfm_hf.vlm.tiny import tiny_llava_parts

IMAGE_SIZE, PATCH = 28, 14


def _write_original(folder, text, vision, projector, tokenizer, *, with_tower: bool):
    """Save the parts the way the LLaVA code base does (transformers 4.x key names)."""
    folder.mkdir(parents=True)
    sd = {}
    for k, v in text.state_dict().items():
        sd[k] = v.clone()  # model.* and lm_head.weight
    sd["model.mm_projector.0.weight"] = projector[0].weight.clone()
    sd["model.mm_projector.0.bias"] = projector[0].bias.clone()
    sd["model.mm_projector.2.weight"] = projector[2].weight.clone()
    sd["model.mm_projector.2.bias"] = projector[2].bias.clone()
    if with_tower:
        for k, v in vision.state_dict().items():
            sd["model.vision_tower.vision_tower.vision_model." + k] = v.clone()
    save_file(sd, str(folder / "model.safetensors"))
    cfg = text.config.to_dict()
    cfg.update(
        model_type="llava_mistral", architectures=["LlavaMistralForCausalLM"], mm_projector_type="mlp2x_gelu",
        mm_vision_select_layer=-2, mm_vision_select_feature="patch", mm_hidden_size=vision.config.hidden_size,
        image_aspect_ratio="pad", mm_vision_tower="openai/clip-vit-large-patch14-336",
    )
    (folder / "config.json").write_text(json.dumps(cfg))
    tokenizer.save_pretrained(str(folder))


def _reference_logits(text, vision, projector, input_ids, attention_mask, pixel_values, image_token_id):
    """The original LLaVA forward: CLIP hidden state -2 without CLS -> projector -> features spliced in
    place of the image placeholder positions -> the language model on embeddings."""
    with torch.no_grad():
        feats = vision(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
        feats = projector(feats)
        ids = input_ids.clone()
        is_img = ids == image_token_id
        ids[is_img | (ids >= text.config.vocab_size)] = 0  # image and pad positions (pads are masked out)
        emb = text.get_input_embeddings()(ids)
        emb[is_img] = feats.reshape(-1, feats.shape[-1]).to(emb.dtype)
        return text(inputs_embeds=emb, attention_mask=attention_mask).logits


@pytest.mark.parametrize("with_tower", [True, False])
def test_round_trip_identical_logits(tmp_path, with_tower):
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    text, vision, projector, tokenizer = tiny_llava_parts(seed=3, image_size=IMAGE_SIZE, patch=PATCH)
    src, dst = tmp_path / "orig", tmp_path / "hf"
    _write_original(src, text, vision, projector, tokenizer, with_tower=with_tower)
    # The tower's config (and, without tower weights in SRC, its weights) come from a CLIP folder.
    vision.save_pretrained(str(tmp_path / "clip"))
    args = ["convert-llava-med", str(src), str(dst), "--vision-model", str(tmp_path / "clip")]
    assert main(args) == 0

    model, info = LlavaForConditionalGeneration.from_pretrained(str(dst), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    model.eval()
    processor = LlavaProcessor.from_pretrained(str(dst))
    assert len(processor.tokenizer) == len(tokenizer) + 2  # <image> and <pad>
    assert model.config.text_config.vocab_size % 64 == 0

    rng = np.random.default_rng(0)
    from PIL import Image

    images = [Image.fromarray((rng.random((IMAGE_SIZE, IMAGE_SIZE, 3)) * 255).astype(np.uint8)) for _ in range(2)]
    prompts = ["[INST] <image>\nWhat is shown? [/INST]", "[INST] <image>\nIs there a lesion in the left lung? [/INST]"]
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=images, text=prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        got = model(**inputs).logits
    ref = _reference_logits(text, vision, projector, inputs["input_ids"], inputs["attention_mask"],
                            inputs["pixel_values"], model.config.image_token_index)
    v = text.config.vocab_size
    mask = inputs["attention_mask"].bool()
    diff = (got[..., :v] - ref)[mask].abs().max().item()
    assert diff <= 1e-5, f"max |logit difference| {diff}"
    # The image really enters the answer: another image changes the logits.
    other = processor(images=images[::-1], text=prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        assert not torch.allclose(model(**other).logits[mask], got[mask])


def test_converted_folder_runs_through_create_vlm(tmp_path):
    from medfm_hf.vlm import GenerationConfig, create_vlm

    text, vision, projector, tokenizer = tiny_llava_parts(seed=1, image_size=IMAGE_SIZE, patch=PATCH)
    src, dst = tmp_path / "orig", tmp_path / "hf"
    _write_original(src, text, vision, projector, tokenizer, with_tower=True)
    vision.save_pretrained(str(tmp_path / "clip"))
    assert main(["convert-llava-med", str(src), str(dst), "--vision-model", str(tmp_path / "clip")]) == 0
    vlm = create_vlm("llava_med", checkpoint=str(dst), batch_size=2)
    img = (np.random.default_rng(1).random((20, 36, 3)) * 255).astype(np.uint8)
    out = vlm.generate([(img, "What is shown?"), (img, "Which side?")], GenerationConfig(max_new_tokens=4))
    assert len(out) == 2 and all(r.tokens_out and r.tokens_out <= 4 for r in out)
    assert str(dst.resolve()) in vlm.model_id


def test_converter_rejects_bad_input(tmp_path, capsys):
    text, vision, projector, tokenizer = tiny_llava_parts(seed=0, image_size=IMAGE_SIZE, patch=PATCH)
    src = tmp_path / "orig"
    _write_original(src, text, vision, projector, tokenizer, with_tower=False)
    # no vision tower and no --vision-model: one clear line, exit 2
    assert main(["convert-llava-med", str(src), str(tmp_path / "out")]) == 2
    assert "--vision-model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "mistral"
    (src / "config.json").write_text(json.dumps(cfg))
    assert main(["convert-llava-med", str(src), str(tmp_path / "out")]) == 2
    assert "not an original LLaVA layout" in capsys.readouterr().err
    assert main(["convert-llava-med", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
