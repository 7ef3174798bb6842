"""mmembed's ColQwen3 against colpali-engine 0.3.18's ``ColQwen3`` + processor, on tiny checkpoints.

A Qwen3-VL checkpoint with a 320-d ``custom_text_proj`` (the shape of
``TomoroAI/tomoro-colqwen3-embed-4b``), merged and as a LoRA adapter over a base; float32,
CPU, eager attention. Qwen3-VL's deepstack visual features and 16-pixel patches go down the
real code paths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmembed.encoders import Encoder, load_encoder
from mmembed.encoders.qwen_vl import COLPALI_PAGE_PREFIX, COLPALI_PAGE_SUFFIX
from mmembed_testing import parity

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

FAMILY = "colqwen3"


@pytest.fixture(scope="module", params=["merged", "lora"])
def checkpoint(request: pytest.FixtureRequest, tiny_checkpoint) -> Path:
    return tiny_checkpoint(FAMILY, lora=request.param == "lora")


@pytest.fixture(scope="module")
def encoder(checkpoint: Path) -> Encoder:
    return load_encoder(checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> ref.Reference:
    return ref.Reference(FAMILY, checkpoint)


def test_dim_comes_from_the_head(encoder: Encoder) -> None:
    assert (encoder.info.family, encoder.info.kind, encoder.info.dim) == (FAMILY, "multi", 320)


def test_queries_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_queries(encoder, reference)


def test_pages_and_scores_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_pages_and_scores(encoder, reference)


def test_documents_match(encoder: Encoder, reference: ref.Reference) -> None:
    prompts = [COLPALI_PAGE_PREFIX + caption + COLPALI_PAGE_SUFFIX for caption in parity.CAPTIONS]
    ref.check_documents(encoder, reference, prompts)
