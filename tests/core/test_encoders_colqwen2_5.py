"""The ColQwen2.5 encoder on tiny checkpoints: outputs, padding, batching, options, layouts,
adapters and bad input. (Equality with colpali-engine is in test_parity_colqwen2_5.py.)"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mmembed.encoders import load_encoder
from mmembed.encoders.colqwen2_5 import ColQwen2_5Encoder
from mmembed.encoders.weights import WeightLoadError
from mmembed.types import MMEmbedError
from mmembed_testing import make_tiny_checkpoint

QUERIES = [
    "a",
    "revenue in 2023",
    "What is the organizational structure of the research department?",
    "Table 2",
]


@pytest.fixture(scope="module")
def encoder(tiny_colqwen2_5: Path) -> ColQwen2_5Encoder:
    enc = load_encoder(tiny_colqwen2_5, device="cpu", dtype="float32")
    assert isinstance(enc, ColQwen2_5Encoder)
    return enc


@pytest.fixture(scope="module")
def pages() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    shapes = ((120, 90), (200, 260), (64, 64), (500, 380))  # the last one is resized down to max_pixels
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]


@pytest.fixture(scope="module")
def embedded_pages(encoder: ColQwen2_5Encoder, pages: list[Image.Image]) -> list[torch.Tensor]:
    return encoder.encode_images(pages, batch_size=4, progress=True)


def test_defaults_on_cpu_are_float32_and_eager_attention(tiny_colqwen2_5: Path) -> None:
    enc = load_encoder(tiny_colqwen2_5)
    if enc.device.type != "cpu":
        pytest.skip("an accelerator is present")
    assert enc.dtype == torch.float32
    assert isinstance(enc, ColQwen2_5Encoder) and enc.model.model.config._attn_implementation == "eager"
    assert enc.model.model.visual.config._attn_implementation == "eager"


def test_outputs_are_unpadded_normalised_float32_cpu(
    encoder: ColQwen2_5Encoder, pages: list[Image.Image], embedded_pages: list[torch.Tensor]
) -> None:
    queries = encoder.encode_queries(QUERIES)
    tokenizer = encoder.processor.tokenizer
    for q, text in zip(queries, QUERIES, strict=True):
        assert q.dtype == torch.float32 and q.device.type == "cpu" and q.shape[1] == 128
        assert q.shape[0] == len(tokenizer(text)["input_ids"]) + 10  # + the 10 augmentation tokens
        assert torch.allclose(q.norm(dim=-1), torch.ones(q.shape[0]), atol=1e-5)
    embedded = embedded_pages
    visual = [encoder.image_processor.get_number_of_image_patches(p.height, p.width) // 4 for p in pages]
    prompt_tokens = {e.shape[0] - v for e, v in zip(embedded, visual, strict=True)}
    assert len(prompt_tokens) == 1  # every page: its visual tokens + the same prompt tokens
    assert len({e.shape[0] for e in embedded}) == len(pages)


def test_left_padded_queries_have_no_nan_and_do_not_depend_on_the_batch(encoder: ColQwen2_5Encoder) -> None:
    together = encoder.encode_queries(QUERIES, batch_size=4)
    alone = [encoder.encode_queries([q], batch_size=1)[0] for q in QUERIES]
    for a, b in zip(together, alone, strict=True):
        assert not torch.isnan(a).any()
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    torch.testing.assert_close(encoder.encode_query(QUERIES[2]), alone[2])


def test_pages_do_not_depend_on_the_batch(
    encoder: ColQwen2_5Encoder, pages: list[Image.Image], embedded_pages: list[torch.Tensor]
) -> None:
    together = embedded_pages
    alone = encoder.encode_images(pages, batch_size=1)
    for a, b in zip(together, alone, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_threads_can_share_one_encoder(encoder: ColQwen2_5Encoder) -> None:
    expected = encoder.encode_queries(QUERIES)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: encoder.encode_queries(QUERIES, batch_size=2), range(4)))
    for result in results:
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(result, expected, strict=True))


def test_empty_inputs_give_empty_lists(encoder: ColQwen2_5Encoder) -> None:
    assert encoder.encode_queries([]) == [] and encoder.encode_images([]) == []


def test_bad_inputs_are_named(encoder: ColQwen2_5Encoder, pages: list[Image.Image]) -> None:
    with pytest.raises(MMEmbedError, match="image 1 is a str"):
        encoder.encode_images([pages[0], "page.png"])  # type: ignore[list-item]
    with pytest.raises(MMEmbedError, match=r"image 0 \(1x400 pixels\) cannot be encoded"):
        encoder.encode_images([Image.new("RGB", (1, 400))])
    with pytest.raises(MMEmbedError, match="list of strings"):
        encoder.encode_queries("one query")
    with pytest.raises(MMEmbedError, match="query 1 is a int"):
        encoder.encode_queries(["ok", 3])  # type: ignore[list-item]


def test_nan_output_is_an_error_not_a_silent_vector(
    encoder: ColQwen2_5Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        encoder.model, "forward", lambda **inputs: torch.full((*inputs["input_ids"].shape, 128), float("nan"))
    )
    with pytest.raises(MMEmbedError, match="NaN"):
        encoder.encode_queries(["x"])


def test_max_pixels_options_limit_the_visual_tokens(tiny_colqwen2_5: Path, pages: list[Image.Image]) -> None:
    page = pages[3]  # 380x500: 240 visual tokens at the checkpoint's limit
    full = load_encoder(tiny_colqwen2_5, device="cpu").encode_images([page])[0]
    by_tokens = load_encoder(tiny_colqwen2_5, device="cpu", max_num_visual_tokens=16).encode_images([page])[0]
    by_pixels = load_encoder(tiny_colqwen2_5, device="cpu", max_pixels=16 * 28 * 28).encode_images([page])[0]
    assert by_tokens.shape == by_pixels.shape and by_tokens.shape[0] < full.shape[0]
    torch.testing.assert_close(by_tokens, by_pixels)
    with pytest.raises(MMEmbedError, match="min_pixels"):
        load_encoder(tiny_colqwen2_5, device="cpu", max_pixels=10)


def test_transformers_key_layout_loads_the_same_model(
    tiny_colqwen2_5: Path, tmp_path: Path, encoder: ColQwen2_5Encoder
) -> None:
    """Same seed, weights stored under transformers 5 names instead of the published layout."""
    other = make_tiny_checkpoint("colqwen2_5", tmp_path / "t5", seed=0, layout="transformers")
    assert any(k.startswith("model.language_model.") for k in load_file(str(other / "model.safetensors")))
    got = load_encoder(other, device="cpu", dtype="float32").encode_queries(QUERIES[:2])
    for a, b in zip(got, encoder.encode_queries(QUERIES[:2]), strict=True):
        torch.testing.assert_close(a, b)


def test_missing_weight_is_an_error_naming_it(tiny_colqwen2_5: Path, tmp_path: Path) -> None:
    broken = shutil.copytree(tiny_colqwen2_5, tmp_path / "broken")
    weights = load_file(str(broken / "model.safetensors"))
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(WeightLoadError, match=r"model\.language_model\.layers\.1\.mlp\.up_proj\.weight"):
        load_encoder(broken, device="cpu")


def test_adapter_saving_the_projection_over_a_plain_qwen_base(
    tiny_colqwen2_5_lora: Path, tmp_path: Path
) -> None:
    """An adapter over a plain Qwen2.5-VL that brings ``custom_text_proj`` itself
    (``modules_to_save``) loads as ColQwen2.5 and equals the LoRA-on-projection original."""
    base_dir = tiny_colqwen2_5_lora.parent / "colqwen2.5-tiny-base"
    plain = shutil.copytree(base_dir, tmp_path / "plain-qwen2.5-vl")
    base_weights = load_file(str(plain / "model.safetensors"))
    save_file(
        {k: v for k, v in base_weights.items() if "custom_text_proj" not in k},
        str(plain / "model.safetensors"),
    )
    config = json.loads((plain / "config.json").read_text())
    config["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    (plain / "config.json").write_text(json.dumps(config))

    adapter = shutil.copytree(tiny_colqwen2_5_lora, tmp_path / "adapter")
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    scale = adapter_config["lora_alpha"] / adapter_config["r"]
    proj_a = tensors.pop("base_model.model.custom_text_proj.lora_A.weight")
    proj_b = tensors.pop("base_model.model.custom_text_proj.lora_B.weight")
    tensors["base_model.model.custom_text_proj.weight"] = (
        base_weights["custom_text_proj.weight"] + scale * proj_b @ proj_a
    )
    tensors["base_model.model.custom_text_proj.bias"] = base_weights["custom_text_proj.bias"]
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    adapter_config.update(
        base_model_name_or_path=str(plain),
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        modules_to_save=["custom_text_proj"],
    )
    (adapter / "adapter_config.json").write_text(json.dumps(adapter_config))

    got = load_encoder(adapter, device="cpu", dtype="float32")
    assert got.info.family == "colqwen2_5"
    expected = load_encoder(tiny_colqwen2_5_lora, device="cpu", dtype="float32")
    for a, b in zip(got.encode_queries(QUERIES[:2]), expected.encode_queries(QUERIES[:2]), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
