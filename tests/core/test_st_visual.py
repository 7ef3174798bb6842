"""sentence-transformers v6 saves of transformers-native visual retrievers (``*ForRetrieval``):
``MultiVectorEncoder(checkpoint).save(folder)`` keeps the checkpoint at the root and adds a
``retrieval`` Transformer + ``MultiVectorMask`` layer; mmembed loads it through the native family,
with parity against sentence-transformers itself (ColPali, ColQwen2).

ColModernVBert is the exception on the reference's side: sentence-transformers 6.2 sends its
queries without the processor's query prefix / augmentation and fails on its images (the model
gets no ``input_ids``), so its ST save is checked to give the native family's vectors instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmembed.encoders import inspect_checkpoint, load_encoder, match_family
from mmembed.types import MMEmbedError
from mmembed_testing import make_tiny_checkpoint, parity

st = pytest.importorskip("sentence_transformers", reason="reference only: pip install sentence-transformers")

QUERIES = ["What is the revenue?", "solar capacity of european countries in 2023 compared with 2022"]


def _st_save(family: str, folder: Path) -> tuple[Path, Path]:
    native = make_tiny_checkpoint(family, folder / "native", seed=0)
    saved = folder / "st"
    st.MultiVectorEncoder(str(native), device="cpu").save(str(saved))
    return native, saved


@pytest.mark.parametrize("family", ["colqwen2_hf", "colpali_hf"])
def test_st_saves_match_sentence_transformers(family: str, tmp_path: Path) -> None:
    native, saved = _st_save(family, tmp_path)
    settings = json.loads((saved / "config_sentence_transformers.json").read_text())
    assert settings["model_type"] == "MultiVectorEncoder"
    assert json.loads((saved / "sentence_bert_config.json").read_text())["transformer_task"] == "retrieval"
    assert match_family(inspect_checkpoint(saved)).id == family
    encoder = load_encoder(saved, device="cpu", dtype="float32")
    reference = st.MultiVectorEncoder(str(saved), device="cpu")
    pages = parity.pages()
    for batch_size in (len(pages), 1):
        images = encoder.encode_images(pages, batch_size=batch_size)
        expected = [t.cpu().float() for t in reference.encode_document(pages, batch_size=batch_size)]
        parity.assert_embeddings_match(images, expected)
        queries = encoder.encode_queries(QUERIES, batch_size=batch_size)
        expected = [t.cpu().float() for t in reference.encode_query(QUERIES, batch_size=batch_size)]
        parity.assert_embeddings_match(queries, expected)
    # The same vectors as the checkpoint underneath (the index fingerprint still tells the two
    # folders apart: sentence-transformers re-writes config.json and the weights file).
    plain = load_encoder(native, device="cpu", dtype="float32")
    for ours, theirs in zip(encoder.encode_images(pages), plain.encode_images(pages), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_colmodernvbert_st_save_gives_the_native_vectors(tmp_path: Path) -> None:
    native, saved = _st_save("colmodernvbert_hf", tmp_path)
    encoder = load_encoder(saved, device="cpu", dtype="float32")
    assert encoder.info.family == "colmodernvbert_hf"
    plain = load_encoder(native, device="cpu", dtype="float32")
    pages = parity.pages()[:2]
    for ours, theirs in zip(encoder.encode_images(pages), plain.encode_images(pages), strict=True):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(encoder.encode_queries(QUERIES)[0], plain.encode_queries(QUERIES)[0])


def test_what_the_st_layer_would_add_is_refused(tmp_path: Path) -> None:
    _, saved = _st_save("colqwen2_hf", tmp_path)
    prompted = shutil.copytree(saved, tmp_path / "prompted")
    settings = json.loads((prompted / "config_sentence_transformers.json").read_text())
    settings["prompts"] = {"query": "query: ", "document": ""}
    (prompted / "config_sentence_transformers.json").write_text(json.dumps(settings))
    with pytest.raises(MMEmbedError, match=r"prompts \{'query': 'query: '\}"):
        load_encoder(prompted, device="cpu")
    skipping = shutil.copytree(saved, tmp_path / "skipping")
    (skipping / "1_MultiVectorMask" / "config.json").write_text(json.dumps({"skiplist_words": ["."]}))
    with pytest.raises(MMEmbedError, match="skiplist"):
        load_encoder(skipping, device="cpu")
