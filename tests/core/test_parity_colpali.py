"""mmembed's ColPali against colpali-engine 0.3.18's ``ColPali`` + ``ColPaliProcessor``, on tiny checkpoints.

A PaliGemma checkpoint laid out like ``vidore/colpaligemma-3b-pt-448-base`` (merged) and a
LoRA adapter over it like ``vidore/colpali-v1.3``; float32, CPU, eager attention. Pages of
different sizes are all resized to the model's square; queries carry ten ``<pad>`` tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmembed.encoders import Encoder, load_encoder
from mmembed_testing import parity

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

FAMILY = "colpali"


@pytest.fixture(scope="module", params=["merged", "lora"])
def checkpoint(request: pytest.FixtureRequest, tiny_checkpoint) -> Path:
    return tiny_checkpoint(FAMILY, lora=request.param == "lora")


@pytest.fixture(scope="module")
def encoder(checkpoint: Path) -> Encoder:
    return load_encoder(checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> ref.Reference:
    return ref.Reference(FAMILY, checkpoint)


def test_family(encoder: Encoder) -> None:
    assert (encoder.info.family, encoder.info.kind, encoder.info.dim, encoder.info.similarity) == (
        FAMILY,
        "multi",
        128,
        "maxsim",
    )


def test_queries_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_queries(encoder, reference)


def test_pages_and_scores_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_pages_and_scores(encoder, reference)


def test_documents_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_documents(encoder, reference, [f"<image><bos>{caption}" for caption in parity.CAPTIONS])
