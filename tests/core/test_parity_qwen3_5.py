"""ColQwen3.5 / BiQwen3.5 against colpali-engine 0.3.18 on tiny Qwen3.5 checkpoints (float32,
CPU, eager attention; Gated DeltaNet layers on transformers' PyTorch kernels): ColQwen3.5
merged and as a LoRA adapter over a base, BiQwen3.5 merged; queries of different lengths
(left padding through linear attention), pages of different sizes, documents, scores, the
similarity-map grid; then each family end to end through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmembed.encoders import inspect_checkpoint, list_models, load_encoder, match_family
from mmembed.encoders.qwen_vl import COLPALI_PAGE_PREFIX, COLPALI_PAGE_SUFFIX
from mmembed_testing import parity

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

CASES = [("colqwen3_5", False), ("colqwen3_5", True), ("biqwen3_5", False)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{'lora' if lo else 'merged'}" for f, lo in CASES])
def case(request: pytest.FixtureRequest, tiny_checkpoint) -> tuple[str, Any, ref.Reference]:
    family, lora = request.param
    path = tiny_checkpoint(family, lora=lora)
    return family, load_encoder(path, device="cpu", dtype="float32"), ref.Reference(family, path)


def test_family_kind_and_dim(case) -> None:
    family, encoder, _ = case
    expected = {"colqwen3_5": ("multi", 128, "maxsim"), "biqwen3_5": ("single", 128, "dot")}
    info = encoder.info
    assert (info.family, info.kind, info.dim, info.similarity) == (family, *expected[family])


def test_queries_match(case) -> None:
    ref.check_queries(case[1], case[2])


def test_pages_and_scores_match(case) -> None:
    ref.check_pages_and_scores(case[1], case[2])


def test_text_and_interleaved_documents_match(case) -> None:
    prompts = [COLPALI_PAGE_PREFIX + caption + COLPALI_PAGE_SUFFIX for caption in parity.CAPTIONS]
    ref.check_documents(case[1], case[2], prompts)


def test_similarity_map_grid_is_colpali_engines(tiny_checkpoint) -> None:
    path = tiny_checkpoint("colqwen3_5")
    reference = ref.Reference("colqwen3_5", path)
    encoder = load_encoder(path, device="cpu", dtype="float32")
    for page in parity.pages():
        n_x, n_y = reference.processor.get_n_patches(
            image_size=page.size, spatial_merge_size=reference.model.spatial_merge_size
        )
        layout = encoder.page_layout(page)
        assert layout is not None and (layout.cols, layout.rows) == (n_x, n_y)


@pytest.mark.parametrize("family", ["colqwen3_5", "biqwen3_5"])
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
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["score"] >= hits[1]["score"]
