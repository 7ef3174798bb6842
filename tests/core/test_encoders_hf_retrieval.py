"""transformers-native ColPali / ColQwen2 (``*-hf`` checkpoints) on tiny checkpoints.

For these checkpoints transformers' own ``ColPaliForRetrieval`` / ``ColQwen2ForRetrieval``
and processors are the reference: mmembed's embeddings (batched, padded, size-sorted) must
equal what those classes give one input at a time. Pages must also equal those of the same
weights in colpali-engine's layout, loaded by the ``colpali`` / ``colqwen2`` families, which
are parity-tested against colpali-engine itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mmembed.encoders import clear_encoder_cache, inspect_checkpoint, load_encoder, match_family
from mmembed.types import MMEmbedError
from mmembed_testing import parity
from mmembed_testing.tiny_hf_retrieval import to_colpali_engine_layout

FAMILIES = {
    "colpali_hf": ("ColPaliForRetrieval", "ColPaliProcessor", "colpali"),
    "colqwen2_hf": ("ColQwen2ForRetrieval", "ColQwen2Processor", "colqwen2"),
}
QUERIES = ["What was the revenue in 2023?", "org chart", "Which page shows the balance sheet of the company?"]


def pages() -> list[Image.Image]:
    noise = Image.effect_noise((150, 210), 60).convert("RGB")
    return [*parity.pages(), noise, Image.new("RGB", (90, 60), "navy")]


def reference_one_by_one(
    folder: Path, family: str, *, queries: list[str], images: list[Image.Image]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """transformers' classes, one input per call (no padding), real tokens only."""
    import transformers

    model_class, processor_class, _ = FAMILIES[family]
    model = (
        getattr(transformers, model_class).from_pretrained(str(folder), attn_implementation="eager").eval()
    )
    processor = getattr(transformers, processor_class).from_pretrained(str(folder))

    def run(batch: Any) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        with torch.no_grad():
            out = model(**inputs).embeddings[0]  # (tokens, dim)
        return out[inputs["attention_mask"][0].bool()]

    return (
        [run(processor.process_queries([q], return_tensors="pt")) for q in queries],
        [run(processor.process_images([im], return_tensors="pt")) for im in images],
    )


def assert_same(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape
        assert parity.relative_error(a, b) < parity.TOLERANCE


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dispatch_on_the_config_model_type(tiny_checkpoint, family: str) -> None:
    folder = tiny_checkpoint(family)
    assert json.loads((folder / "config.json").read_text())["model_type"] == FAMILIES[family][2]
    assert match_family(inspect_checkpoint(folder)).id == family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_batched_embeddings_equal_transformers_one_by_one(tiny_checkpoint, family: str) -> None:
    folder = tiny_checkpoint(family)
    encoder = load_encoder(folder)
    assert encoder.info.family == family and encoder.info.dim == 128 and encoder.info.similarity == "maxsim"
    images = pages()
    ref_queries, ref_pages = reference_one_by_one(folder, family, queries=QUERIES, images=images)
    assert_same(encoder.encode_queries(QUERIES, batch_size=3), ref_queries)  # padded batch
    assert_same(encoder.encode_images(images, batch_size=2), ref_pages)
    # Text documents take the processor's text path, i.e. the query prompt.
    assert_same(encoder.encode_documents(QUERIES[:1]), ref_queries[:1])
    assert_same(encoder.encode_text_documents(QUERIES[:1]), ref_queries[:1])  # transformers has no other


def test_colqwen2_hf_reads_the_weights_colpali_engine_layout_has(tiny_checkpoint, tmp_path: Path) -> None:
    """The same weights in colpali-engine's layout (``colqwen2`` family) give pages of the
    same length and nearly the same vectors: the page prompt is the same, and the only
    difference is that transformers' ``ColQwen2ForRetrieval`` runs the VLM on input
    embeddings alone, so image tokens get plain 1-D rope positions instead of Qwen2-VL's
    3-D ones. A weight read from the wrong place would leave vectors unrelated (cosine ~0).
    (ColPali's page prompts differ outright: colpali-engine 0.3.18 starts pages with two
    ``<bos>`` tokens, transformers with one.)"""
    hf_folder = tiny_checkpoint("colqwen2_hf")
    engine = load_encoder(to_colpali_engine_layout(hf_folder, tmp_path / "engine-layout"))
    assert engine.info.family == "colqwen2"
    images = pages()
    for ours, theirs in zip(
        load_encoder(hf_folder).encode_images(images), engine.encode_images(images), strict=True
    ):
        assert ours.shape == theirs.shape
        cosine = (ours * theirs).sum(-1)  # rows are unit vectors
        assert float(cosine.min()) > 0.99


def test_a_page_with_its_own_text_is_refused(tiny_checkpoint) -> None:
    encoder = load_encoder(tiny_checkpoint("colpali_hf"))
    with pytest.raises(MMEmbedError, match=r"document 0 is an \(image, text\) pair.*pass the image alone"):
        encoder.encode_documents([(pages()[0], "a caption")])


def test_page_budget_applies_to_colqwen2_hf(tiny_checkpoint) -> None:
    folder = tiny_checkpoint("colqwen2_hf")
    page = Image.new("RGB", (400, 400), "white")
    full = load_encoder(folder).encode_images([page])[0]
    small = load_encoder(folder, max_num_visual_tokens=16).encode_images([page])[0]
    assert small.shape[0] < full.shape[0]
    with pytest.raises(MMEmbedError, match="max_pixels"):
        load_encoder(tiny_checkpoint("colpali_hf"), max_pixels=10_000)  # ColPali pages are one fixed square


def test_incomplete_checkpoint_names_the_missing_weights(tiny_checkpoint, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_checkpoint("colpali_hf"), tmp_path / "no-head")
    weights = load_file(str(folder / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if not k.startswith("embedding_proj_layer.")},
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    clear_encoder_cache()
    with pytest.raises(
        MMEmbedError, match=r"lacks 2 weight\(s\) of ColPaliForRetrieval.*embedding_proj_layer"
    ):
        load_encoder(folder)


def test_there_is_no_lora_form_to_build(tmp_path: Path) -> None:
    from mmembed_testing import make_tiny_checkpoint

    with pytest.raises(ValueError, match="ship merged"):
        make_tiny_checkpoint("colqwen2_hf", tmp_path / "x", lora=True)
