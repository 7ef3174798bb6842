"""ColGemma3 / BiGemma3 against colpali-engine 0.3.18 on tiny checkpoints (float32, CPU,
eager attention): ColGemma3 merged and as a LoRA adapter over a base, BiGemma3 merged.
Prompts come from the checkpoint's chat template on both sides; the interleaved document
(a page with its caption) is checked against the reference model on the chat template's
``[image, caption]`` turn. Then each family end to end through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmembed.encoders import inspect_checkpoint, list_models, load_encoder, match_family
from mmembed_testing import parity

pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)
from mmembed_testing import colpali_reference as ref

CASES = [("colgemma3", False), ("colgemma3", True), ("bigemma3", False)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{'lora' if lo else 'merged'}" for f, lo in CASES])
def case(request: pytest.FixtureRequest, tiny_checkpoint) -> tuple[str, Any, ref.Reference]:
    family, lora = request.param
    path = tiny_checkpoint(family, lora=lora)
    return family, load_encoder(path, device="cpu", dtype="float32"), ref.Reference(family, path)


def test_family_kind_and_dim(case) -> None:
    family, encoder, _ = case
    expected = {"colgemma3": ("multi", 128, "maxsim"), "bigemma3": ("single", 64, "dot")}
    info = encoder.info
    assert (info.family, info.kind, info.dim, info.similarity) == (family, *expected[family])


def test_queries_match(case) -> None:
    ref.check_queries(case[1], case[2])


def test_pages_and_scores_match(case) -> None:
    ref.check_pages_and_scores(case[1], case[2])


def test_text_and_interleaved_documents_match(case) -> None:
    _, encoder, reference = case
    images = parity.pages()[1:]
    tokenizer = reference.processor.tokenizer
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": caption}]}],
            tokenize=False,
            add_generation_prompt=False,
        )
        for caption in parity.CAPTIONS
    ]
    batch = reference.processor(
        text=prompts, images=[[i.convert("RGB")] for i in images], padding="longest", return_tensors="pt"
    )
    interleaved = reference.run(batch)
    texts = reference.texts(parity.TEXT_DOCUMENTS)
    docs: list[Any] = [parity.TEXT_DOCUMENTS[0], (images[0], parity.CAPTIONS[0])]
    docs += [parity.TEXT_DOCUMENTS[1], (images[1], parity.CAPTIONS[1])]
    got = encoder.encode_documents(docs, batch_size=2)
    parity.assert_embeddings_match(got, [texts[0], interleaved[0], texts[1], interleaved[1]])
    parity.assert_embeddings_match(
        encoder.encode_text_documents(list(parity.TEXT_DOCUMENTS), batch_size=2), texts
    )


def test_similarity_map_grid(tiny_checkpoint) -> None:
    """Every page becomes the pooled square of ``mm_tokens_per_image`` tokens (4x4 here)."""
    encoder = load_encoder(tiny_checkpoint("colgemma3"), device="cpu", dtype="float32")
    for page in parity.pages():
        layout = encoder.page_layout(page)
        assert layout is not None and (layout.rows, layout.cols) == (4, 4)
    assert encoder.explain_page("revenue", parity.pages()[0]).maps.shape[1:] == (4, 4)


def test_plain_gemma3_is_not_taken_for_a_retriever(tiny_checkpoint, tmp_path: Path) -> None:
    from mmembed.encoders import UnknownModelError

    plain = shutil.copytree(tiny_checkpoint("bigemma3"), tmp_path / "gemma3")
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(
        json.dumps({**config, "architectures": ["Gemma3ForConditionalGeneration"]})
    )
    with pytest.raises(UnknownModelError, match="colgemma3"):
        load_encoder(plain, device="cpu")


@pytest.mark.parametrize("family", ["colgemma3", "bigemma3"])
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
