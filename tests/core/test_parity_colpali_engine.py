"""mmembed's retrievers against colpali-engine 0.3.18's models + processors, on tiny checkpoints.

Every family is checked merged and as a LoRA adapter over a base (float32, CPU, eager
attention): queries of different lengths (left padding, batched and one by one), pages of
different sizes in one batch, text-only and interleaved documents, and the score matrix.

- ColQwen2 / BiQwen2: Qwen2-VL, the layout of ``vidore/colqwen2-v1.0``.
- ColQwen3: Qwen3-VL with a 320-d ``custom_text_proj`` (``TomoroAI/tomoro-colqwen3-embed-4b``);
  deepstack visual features and 16-pixel patches go down the real code paths.
- BiQwen2.5 (Nomic Embed Multimodal): merged (``architectures: ["BiQwen2_5"]``) and
  LoRA-over-plain-Qwen2.5-VL (``nomic-ai/nomic-embed-multimodal-3b``).
- ColPali: PaliGemma laid out like ``vidore/colpaligemma-3b-pt-448-base`` and a LoRA adapter
  like ``vidore/colpali-v1.3``; pages are all resized to the model's square, queries carry
  ten ``<pad>`` tokens.
- ColIdefics3 (ColSmol): Idefics3 laid out like ``vidore/colSmol-256M`` (head named
  ``linear``); pages of different sizes are tiled differently, so one batch mixes very
  different sequence and tile counts.

ColQwen2.5 has its own module (test_parity_colqwen2_5.py); DSE-Qwen2 is in test_parity_colqwen2.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mmembed.encoders import Encoder, UnknownModelError, load_encoder
from mmembed.encoders.qwen_vl import COLPALI_PAGE_PREFIX, COLPALI_PAGE_SUFFIX
from mmembed_testing import parity

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

QWEN_DOCUMENT = COLPALI_PAGE_PREFIX + "{}" + COLPALI_PAGE_SUFFIX


@dataclass(frozen=True)
class Family:
    """What the encoder should report, and the reference's interleaved-document prompt."""

    id: str
    kind: str
    dim: int
    similarity: str
    document_prompt: str
    """``{}`` stands for the caption."""


FAMILIES = (
    Family("colqwen2", "multi", 128, "maxsim", QWEN_DOCUMENT),
    Family("biqwen2", "single", 128, "dot", QWEN_DOCUMENT),
    Family("colqwen3", "multi", 320, "maxsim", QWEN_DOCUMENT),  # dim from the head
    Family("biqwen2_5", "single", 128, "dot", QWEN_DOCUMENT),  # the tiny backbone's hidden size
    Family("colpali", "multi", 128, "maxsim", "<image><bos>{}"),
    Family("colidefics3", "multi", 128, "maxsim", "<|im_start|>User:<image>{}<end_of_utterance>\nAssistant:"),
)
CASES = [(family, lora) for family in FAMILIES for lora in (False, True)]


@dataclass(frozen=True)
class Case:
    family: Family
    encoder: Encoder
    reference: ref.Reference


@pytest.fixture(
    scope="module", params=CASES, ids=[f"{f.id}-{'lora' if lora else 'merged'}" for f, lora in CASES]
)
def case(request: pytest.FixtureRequest, tiny_checkpoint) -> Case:
    family, lora = request.param
    path = tiny_checkpoint(family.id, lora=lora)
    return Case(family, load_encoder(path, device="cpu", dtype="float32"), ref.Reference(family.id, path))


def test_family_kind_dim_and_similarity(case: Case) -> None:
    info, family = case.encoder.info, case.family
    assert (info.family, info.kind, info.dim, info.similarity) == (
        family.id,
        family.kind,
        family.dim,
        family.similarity,
    )


def test_queries_match(case: Case) -> None:
    ref.check_queries(case.encoder, case.reference)


def test_pages_and_scores_match(case: Case) -> None:
    ref.check_pages_and_scores(case.encoder, case.reference)


def test_text_and_interleaved_documents_match(case: Case) -> None:
    prompts = [case.family.document_prompt.format(caption) for caption in parity.CAPTIONS]
    ref.check_documents(case.encoder, case.reference, prompts)


def test_plain_qwen2_5_vl_is_not_taken_for_an_embedding_model(tiny_checkpoint) -> None:
    # The base of the BiQwen2.5 LoRA checkpoint: a plain Qwen2_5_VLForConditionalGeneration.
    base = tiny_checkpoint("biqwen2_5", lora=True).parent / "biqwen2_5-tiny-base"
    with pytest.raises(UnknownModelError, match="biqwen2_5"):
        load_encoder(base, device="cpu", dtype="float32")
