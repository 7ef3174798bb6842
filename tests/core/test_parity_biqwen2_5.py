"""mmembed's BiQwen2.5 (Nomic Embed Multimodal) against colpali-engine 0.3.18, on tiny checkpoints.

Merged (``architectures: ["BiQwen2_5"]``) and LoRA-over-plain-Qwen2.5-VL (the layout of
``nomic-ai/nomic-embed-multimodal-3b``); float32, CPU, eager attention. Compared: left-padded
query batches (batched and one by one), a batch of pages of three sizes, text-only and
interleaved (image + text) documents, and the dense score matrix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmembed.encoders import Encoder, UnknownModelError, load_encoder
from mmembed.encoders.qwen_vl import COLPALI_PAGE_PREFIX, COLPALI_PAGE_SUFFIX
from mmembed_testing import parity

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

FAMILY = "biqwen2_5"


@pytest.fixture(scope="module", params=["merged", "lora"])
def checkpoint(request: pytest.FixtureRequest, tiny_checkpoint) -> Path:
    return tiny_checkpoint(FAMILY, lora=request.param == "lora")


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> ref.Reference:
    return ref.Reference(FAMILY, checkpoint)


@pytest.fixture(scope="module")
def encoder(checkpoint: Path) -> Encoder:
    return load_encoder(checkpoint, device="cpu", dtype="float32")


def test_is_a_single_vector_family(encoder: Encoder) -> None:
    assert (encoder.info.family, encoder.info.kind, encoder.info.similarity) == (FAMILY, "single", "dot")
    assert encoder.info.dim == 128  # the tiny backbone's hidden size: no projection head


def test_queries_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_queries(encoder, reference)


def test_pages_and_scores_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_pages_and_scores(encoder, reference)


def test_text_and_interleaved_documents_match(encoder: Encoder, reference: ref.Reference) -> None:
    prompts = [COLPALI_PAGE_PREFIX + caption + COLPALI_PAGE_SUFFIX for caption in parity.CAPTIONS]
    ref.check_documents(encoder, reference, prompts)


def test_plain_qwen2_5_vl_is_not_taken_for_an_embedding_model(tiny_checkpoint) -> None:
    base = (
        tiny_checkpoint(FAMILY, lora=True).parent / f"{FAMILY}-tiny-base"
    )  # Qwen2_5_VLForConditionalGeneration
    with pytest.raises(UnknownModelError, match="biqwen2_5"):
        load_encoder(base, device="cpu", dtype="float32")
