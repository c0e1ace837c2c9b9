"""Local transformers families on tiny random models built in-process: the registry, batching and left
padding, ``token_type_ids``, reasoning-block stripping, LLaVA's pad-to-square, truncation counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medfm_hf.vlm import GenerationConfig, create_vlm, list_vlms, summarize_responses, vlm_spec
from medfm_hf.vlm.llava_med import expand_to_square

LOCAL = ["medgemma", "medgemma-1.5", "hf", "llava_med"]
CFG = GenerationConfig(max_new_tokens=5)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((18 + 3 * i, 30 - i, 3)) * 255).astype(np.uint8) for i in range(n)]


@pytest.fixture(scope="module")
def tiny():
    """One tiny model per family, shared by the tests of this module (built once: ~1 s each)."""
    return {name: create_vlm(name, size="tiny") for name in LOCAL}


def test_registry_lists_every_family():
    assert set(list_vlms()) == {"medgemma", "medgemma-1.5", "llava_med", "hf", "openai", "gemini"}
    assert vlm_spec("openai").kind == "api" and vlm_spec("medgemma").kind == "local"
    with pytest.raises(KeyError, match="unknown vlm 'nope'; known: gemini"):
        create_vlm("nope")


@pytest.mark.parametrize("name", LOCAL)
def test_tiny_family_answers_every_input(tiny, name):
    vlm = tiny[name]
    assert vlm.name == name and "tiny-random" in vlm.model_id
    imgs = _images(3)
    out = vlm.generate([(im, f"Question {i}?") for i, im in enumerate(imgs)], CFG)
    assert len(out) == 3
    for r in out:
        assert r.finish_reason in ("stop", "length")
        assert 1 <= r.tokens_out <= CFG.max_new_tokens
        assert r.tokens_in > 4  # image tokens + prompt
        assert r.status == ("empty" if not r.text else ("truncated" if r.finish_reason == "length" else "ok"))
        assert r.seconds > 0 and not r.cached


@pytest.mark.parametrize("name", ["medgemma", "llava_med"])
def test_batch_of_8_equals_batch_of_1_with_left_padding(tiny, name):
    vlm = tiny[name]
    vlm.tokenizer.padding_side = "right"  # a checkpoint may ship right padding: the engine must override it
    prompts = ["Q?" + " more words" * i for i in range(8)]  # different lengths -> padding
    inputs = list(zip(_images(8, seed=1), prompts))
    single = [vlm.with_options(batch_size=1).generate([x], CFG)[0] for x in inputs]
    batched = vlm.with_options(batch_size=8).generate(inputs, CFG)
    assert [r.raw_text for r in batched] == [r.raw_text for r in single]
    assert [r.tokens_out for r in batched] == [r.tokens_out for r in single]
    assert [r.tokens_in for r in batched] == [r.tokens_in for r in single]
    enc = vlm.encode([vlm.make_query(*x) for x in inputs], CFG)
    mask = enc["attention_mask"]
    assert mask[:, -1].all() and not mask[0, 0]  # pads on the left only
    first = enc["input_ids"][torch.arange(8), mask.argmax(dim=1)]
    assert (first == vlm.tokenizer.bos_token_id).all()  # exactly one BOS starts every row
    assert ((enc["input_ids"] == vlm.tokenizer.bos_token_id).sum(dim=1) == 1).all()
    # The same next-token logits with and without padding (the padded rows are exactly masked).
    with torch.no_grad():
        full = vlm.model(**enc).logits[:, -1]
        one = vlm.model(**vlm.encode([vlm.make_query(*inputs[0])], CFG)).logits[:, -1]
    assert torch.allclose(full[0], one[0], atol=1e-5)


def test_gemma_gets_token_type_ids_and_they_matter(tiny):
    vlm = tiny["medgemma"]
    seen = {}
    real = vlm.model.generate

    def spy(**kw):
        seen.update(kw)
        return real(**kw)

    vlm.model.generate = spy
    try:
        vlm.generate([(_images(1)[0], "What is shown?")], CFG)
    finally:
        del vlm.model.generate
    assert "token_type_ids" in seen and "pixel_values" in seen
    image_id = vlm.model.config.image_token_index
    assert torch.equal(seen["token_type_ids"].bool(), seen["input_ids"] == image_id)
    # Without them the image tokens lose bidirectional attention: the logits change.
    enc = vlm.encode([vlm.make_query(_images(1)[0], "What is shown?")], CFG)
    no_tt = {k: v for k, v in enc.items() if k != "token_type_ids"}
    with torch.no_grad():
        assert not torch.allclose(vlm.model(**enc).logits, vlm.model(**no_tt).logits, atol=1e-6)


def test_medgemma_15_strips_reasoning_block(tiny):
    vlm = tiny["medgemma-1.5"]
    tok = vlm.tokenizer
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    ids = tok("<unused94>thought\nthe left lung is clear<unused95>Answer: B", add_special_tokens=False).input_ids
    r = vlm.decode(ids + [end, 0, 0], CFG, tokens_in=10)
    assert r.text == "Answer: B" and r.status == "ok" and r.finish_reason == "stop"
    assert "<unused94>" in r.raw_text and r.thinking == "the left lung is clear"
    assert r.tokens_out == len(ids) + 1
    # Budget spent inside the thought: no answer, a failure, truncated.
    cut = tok("<unused94>thought\nthe left lung", add_special_tokens=False).input_ids
    r = vlm.decode(cut, CFG)
    assert r.text == "" and r.status == "empty" and r.failed and r.finish_reason == "length"
    # strip_reasoning=False keeps the thought text (special markers removed).
    r = vlm.decode(ids + [end], GenerationConfig(strip_reasoning=False))
    assert r.text.startswith("thought") and r.text.endswith("Answer: B")
    # MedGemma 1 does not strip.
    assert tiny["medgemma"].decode(ids + [end], CFG).thinking is None


def test_reasoning_block_stripped_end_to_end(tiny):
    """Random weights never write a reasoning block, so the real ``generate`` output's new tokens are
    overwritten with scripted ones: the engine's slicing, padding and decoding run unchanged."""
    vlm = tiny["medgemma-1.5"].with_options(batch_size=2)
    tok = vlm.tokenizer
    end, pad = tok.convert_tokens_to_ids("<end_of_turn>"), tok.pad_token_id
    scripted = [
        tok("<unused94>thought\nlook at the apex<unused95>Pneumothorax", add_special_tokens=False).input_ids + [end],
        tok("Normal", add_special_tokens=False).input_ids + [end],
    ]
    real = vlm.model.generate

    def scripted_generate(**kw):
        out = real(**kw)
        n_in = kw["input_ids"].shape[1]
        width = max(len(s) for s in scripted) + 2
        new = torch.full((out.shape[0], width), pad, dtype=out.dtype)
        for i, s in enumerate(scripted):
            new[i, : len(s)] = torch.tensor(s)
        return torch.cat([out[:, :n_in], new], dim=1)

    vlm.model.generate = scripted_generate
    try:
        a, b = vlm.generate([(_images(1)[0], "Finding?"), (_images(1)[0], "Finding? Be brief.")], CFG)
    finally:
        del vlm.model.generate
    assert a.text == "Pneumothorax" and a.thinking == "look at the apex" and "<unused95>" in a.raw_text
    assert b.text == "Normal" and b.thinking is None
    assert a.tokens_out == len(scripted[0]) and b.tokens_out == len(scripted[1])  # pads after the stop ignored


def test_truncations_are_counted(tiny):
    vlm = tiny["llava_med"]
    eos = vlm.tokenizer.eos_token_id
    word = vlm.tokenizer("yes", add_special_tokens=False).input_ids
    stopped = vlm.decode(word + [eos], CFG)
    cut = vlm.decode(word * 3, CFG)
    assert stopped.finish_reason == "stop" and not stopped.truncated
    assert cut.finish_reason == "length" and cut.status == "truncated" and cut.ok
    s = summarize_responses([stopped, cut])
    assert s["truncated"] == 1 and s["failed"] == 0 and s["n"] == 2


def test_llava_pads_to_square_with_clip_mean(tiny):
    vlm = tiny["llava_med"]
    img = Image.fromarray(np.full((10, 28, 3), 255, np.uint8))  # wide white strip
    q = vlm.make_query(img, "Q")
    sq = vlm.prepare_image(q)
    assert sq.size == (28, 28)
    a = np.asarray(sq)
    fill = (122, 116, 104)  # int(255 * CLIP mean)
    assert vlm.fill_colour() == fill
    assert (a[:9] == fill).all() and (a[9:19] == 255).all() and (a[19:] == fill).all()
    # The model sees the padded square, not the HF processor's centre crop (which would cut the sides).
    ip = vlm.processor.image_processor
    got = vlm.encode([q], CFG)["pixel_values"]
    padded = ip(sq, return_tensors="pt")["pixel_values"]
    cropped = ip(img, return_tensors="pt")["pixel_values"]
    assert torch.allclose(got, padded) and not torch.allclose(got, cropped)
    assert expand_to_square(img.resize((7, 7)), fill).size == (7, 7)


def test_declared_box_conventions_parse_back():
    from medfm_hf.vlm.base import XYXY_NORM_PADDED, YXYX_1000

    tiny_gemma = vlm_spec("medgemma")
    assert tiny_gemma.default_checkpoint == "google/medgemma-4b-it"
    box = YXYX_1000.parse('{"box_2d": [100, 200, 500, 600]}', (200, 100))
    assert box.box == [40.0, 10.0, 120.0, 50.0]
    # LLaVA answers in the padded square: (200 x 100) -> 200 x 200 with 50 px bands above and below.
    box = XYXY_NORM_PADDED.parse("[0.1, 0.25, 0.5, 0.75]", (200, 100))
    assert box.box == [20.0, 0.0, 100.0, 100.0]
    assert XYXY_NORM_PADDED.parse("no box here", (200, 100)) is None


def test_grounding_prompt_states_the_convention(tiny):
    for name in ("medgemma", "llava_med"):
        vlm = tiny[name]
        assert vlm.grounding_prompt("Where is the lesion?").endswith(vlm.box_convention.instruction)


def test_hf_family_takes_any_image_text_model_with_a_chat_template():
    from medfm_hf.vlm.tiny import tiny_llava

    model, processor = tiny_llava(seed=2)
    processor.chat_template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] "
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %} [/INST]{% endif %}{% endfor %}"
    )
    vlm = create_vlm("hf", model=model, processor=processor, batch_size=3, box_format="yxyx_1000")
    q = vlm.make_query(_images(1)[0], "Where?")
    assert vlm.render(q, CFG) == "<s>[INST] <image>\nWhere? [/INST]"
    out = vlm.generate([(im, "Where?") for im in _images(3)], CFG)
    assert all(r.tokens_out >= 1 for r in out) and vlm.box_convention.box_format == "yxyx_1000"
    assert vlm.model_id.startswith("hf:LlavaForConditionalGeneration")


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="float16 gives empty output"):
        create_vlm("medgemma", size="tiny", dtype="float16")
    with pytest.raises(ValueError, match="convert-llava-med"):
        create_vlm("llava_med")
    with pytest.raises(ValueError, match="pass checkpoint="):
        create_vlm("hf")
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="image must be"):
        create_vlm("medgemma", size="tiny").make_query(np.zeros((2, 3, 5)), "Q")


def test_weights_load_with_safetensors_and_no_remote_code(monkeypatch, tmp_path):
    import transformers

    from medfm_hf.vlm import local

    seen = {}

    class FakeModelClass:
        @staticmethod
        def from_pretrained(path, **kw):
            seen.update(kw)
            raise OSError("no file named model.safetensors")

    with pytest.raises(FileNotFoundError, match="safetensors"):
        local.load_transformers_vlm(str(tmp_path), model_class=FakeModelClass)
    assert seen["use_safetensors"] is True and seen["trust_remote_code"] is False
    assert seen["dtype"] == torch.float32
    assert transformers  # the real loader is used by test_convert_llava_med
