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


@pytest.mark.parametrize("family", ["colpali", "colqwen2", "colqwen2_5"])
def test_similarity_maps_match_colpali_engine_interpretability(family: str, tiny_checkpoint) -> None:
    """Retriever.explain's maps are colpali-engine's ``get_similarity_maps_from_embeddings``
    (its processor's ``get_n_patches`` / ``get_image_mask``) on the same page and query, with
    its ``(x, y)`` axes read as our ``(cols, rows)``."""
    import importlib.util
    from pathlib import Path

    import colpali_engine
    import torch
    from PIL import Image, ImageDraw

    # The module alone: the package's __init__ also imports its plotting helpers (matplotlib).
    utils = Path(colpali_engine.__file__).parent / "interpretability" / "similarity_map_utils.py"
    spec = importlib.util.spec_from_file_location("colpali_similarity_map_utils", utils)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_similarity_maps_from_embeddings = module.get_similarity_maps_from_embeddings

    path = tiny_checkpoint(family)
    reference = ref.Reference(family, path)
    # Not square (rows and columns must not swap), and small enough that mmembed's pixel cap
    # leaves the processor's own resize alone (the tiny ColPali takes 112x112 pages).
    page = Image.new("RGB", (196, 140), "white")
    ImageDraw.Draw(page).rectangle([125, 20, 180, 60], fill="navy")
    query = "where is the navy box"
    pages, queries = reference.processor.process_images([page]), reference.processor.process_queries([query])
    with torch.no_grad():
        page_vectors, query_vectors = reference.model(**pages), reference.model(**queries)
    model = reference.model
    if family == "colpali":
        # (colpali's ``model.patch_size`` reads a transformers 4 attribute path: the config says the same)
        patch_size = model.config.vision_config.patch_size
        n_patches = reference.processor.get_n_patches(image_size=page.size, patch_size=patch_size)
    else:
        n_patches = reference.processor.get_n_patches(
            image_size=page.size, spatial_merge_size=model.spatial_merge_size
        )
    mask = reference.processor.get_image_mask(pages)
    (expected,) = get_similarity_maps_from_embeddings(page_vectors, query_vectors, n_patches, mask)
    explanation = load_encoder(path, device="cpu", dtype="float32").explain_page(query, page)
    assert explanation.maps.shape == expected.transpose(1, 2).shape
    torch.testing.assert_close(explanation.maps, expected.transpose(1, 2), atol=1e-4, rtol=1e-4)
