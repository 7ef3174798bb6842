"""mmembed's ColIdefics3 (ColSmol) against colpali-engine 0.3.18's ``ColIdefics3`` + processor.

Tiny Idefics3 checkpoints laid out like ``vidore/colSmol-256M`` (a LoRA adapter over a
ColIdefics3 base whose head is named ``linear``) and merged; float32, CPU, eager attention.
Pages of different sizes are tiled differently (one tile, 2x4 tiles + global view, ...), so
one batch mixes very different sequence and tile counts.
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

FAMILY = "colidefics3"


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
    assert (encoder.info.family, encoder.info.kind, encoder.info.dim) == (FAMILY, "multi", 128)


def test_queries_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_queries(encoder, reference)


def test_pages_and_scores_match(encoder: Encoder, reference: ref.Reference) -> None:
    ref.check_pages_and_scores(encoder, reference)


def test_documents_match(encoder: Encoder, reference: ref.Reference) -> None:
    prompts = [
        f"<|im_start|>User:<image>{caption}<end_of_utterance>\nAssistant:" for caption in parity.CAPTIONS
    ]
    ref.check_documents(encoder, reference, prompts)
