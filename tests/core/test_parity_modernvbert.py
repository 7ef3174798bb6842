"""ColModernVBert / BiModernVBert against colpali-engine 0.3.18, and transformers' native
``colmodernvbert`` layout against transformers' own ``ColModernVBertForRetrieval``, on tiny
checkpoints (float32, CPU, eager attention); then each family end to end through the CLI.

- ``colmodernvbert``: colpali's ``ColModernVBert`` layout (``ModernVBERT/colmodernvbert``),
  merged and as a LoRA adapter over a base; pages of different sizes tile differently.
- ``bimodernvbert``: colpali's ``BiModernVBert`` (mean pooling), merged.
- ``colmodernvbert_hf``: ``ModernVBERT/colmodernvbert-merged``'s layout and processor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from mmembed.encoders import inspect_checkpoint, list_models, load_encoder, match_family
from mmembed_testing import parity
from mmembed_testing.parity import unpad

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

DOCUMENT_PROMPT = "<|begin_of_text|>User:<image>{}<end_of_utterance>\nAssistant:"
CASES = [("colmodernvbert", False), ("colmodernvbert", True), ("bimodernvbert", False)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{'lora' if lo else 'merged'}" for f, lo in CASES])
def case(request: pytest.FixtureRequest, tiny_checkpoint) -> tuple[str, object, ref.Reference]:
    family, lora = request.param
    path = tiny_checkpoint(family, lora=lora)
    return family, load_encoder(path, device="cpu", dtype="float32"), ref.Reference(family, path)


def test_family_kind_and_dim(case) -> None:
    family, encoder, _ = case
    expected = {"colmodernvbert": ("multi", 128, "maxsim"), "bimodernvbert": ("single", 64, "dot")}
    assert (encoder.info.family, encoder.info.kind, encoder.info.dim, encoder.info.similarity) == (
        family,
        *expected[family],
    )


def test_queries_match(case) -> None:
    ref.check_queries(case[1], case[2])


def test_pages_and_scores_match(case) -> None:
    ref.check_pages_and_scores(case[1], case[2])


def test_text_and_interleaved_documents_match(case) -> None:
    ref.check_documents(case[1], case[2], [DOCUMENT_PROMPT.format(c) for c in parity.CAPTIONS])


@pytest.fixture(scope="module")
def native(tiny_checkpoint) -> tuple[Path, object]:
    from transformers import ColModernVBertForRetrieval, ColModernVBertProcessor

    path = tiny_checkpoint("colmodernvbert_hf")
    model = ColModernVBertForRetrieval.from_pretrained(str(path), attn_implementation="eager").eval()
    return path, (model, ColModernVBertProcessor.from_pretrained(str(path)))


def test_native_layout_matches_transformers(native) -> None:
    path, (model, processor) = native
    encoder = load_encoder(path, device="cpu", dtype="float32")
    assert (encoder.info.family, encoder.info.dim) == ("colmodernvbert_hf", 128)
    with torch.no_grad():
        pages = processor.process_images(parity.pages())
        expected_pages = unpad(model(**pages).embeddings, pages["attention_mask"])
        queries = processor.process_queries(list(parity.QUERIES))
        expected_queries = unpad(model(**queries).embeddings, queries["attention_mask"])
    parity.assert_embeddings_match(encoder.encode_images(parity.pages(), batch_size=2), expected_pages)
    for batch_size in (3, 1):
        parity.assert_embeddings_match(
            encoder.encode_queries(list(parity.QUERIES), batch_size=batch_size), expected_queries
        )
    scores = processor.score_retrieval(expected_queries, expected_pages)
    from mmembed.scoring import maxsim

    got = maxsim(encoder.encode_queries(list(parity.QUERIES)), encoder.encode_images(parity.pages()))
    assert parity.relative_error(got, scores) < parity.TOLERANCE


def test_similarity_map_grid_is_colpali_engines(tiny_checkpoint) -> None:
    """The patch grid of a tiled page is what colpali's processor reports (``get_n_patches``),
    and the maps have one cell per patch."""
    from PIL import Image

    path = tiny_checkpoint("colmodernvbert")
    reference = ref.Reference("colmodernvbert", path)
    page = Image.new("RGB", (96, 64), "white")
    n_x, n_y = reference.processor.get_n_patches(image_size=(page.height, page.width))
    encoder = load_encoder(path, device="cpu", dtype="float32")
    layout = encoder.page_layout(page)
    assert layout is not None and (layout.cols, layout.rows) == (n_x, n_y)
    explanation = encoder.explain_page("revenue", page)
    assert explanation.maps.shape[1:] == (n_y, n_x)


@pytest.mark.parametrize("family", ["colmodernvbert", "bimodernvbert", "colmodernvbert_hf"])
def test_dispatch_listing_and_cli_index_search(
    family: str, tiny_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmembed.cli import main
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    path = tiny_checkpoint(family)
    assert match_family(inspect_checkpoint(path)).id == family
    assert family in {row["family"] for row in list_models()}
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(sorted(write_sample_pdfs(tmp_path / "pdfs"))[0], docs)
    index = tmp_path / "idx"
    assert main(["index", str(docs), "--index", str(index), "--model", str(path), "-q", "--dpi", "24"]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(index), "solar capacity", "-k", "2", "--json"]) == 0
    import json

    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
    assert main(["models"]) == 0
    assert family in capsys.readouterr().out
