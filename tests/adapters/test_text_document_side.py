"""Text documents take the model's *document* side, queries its query side, in core and in every
adapter: Nemotron ColEmbed's ``passage: `` vs ``Query: query: `` (checked against NVIDIA's
reference outputs), Nomic's ``search_document: `` vs ``search_query: ``, and no query
augmentation tokens on ColQwen2.5 documents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmembed
from mmembed.encoders.base import Encoder
from mmembed.retrieve import pool
from mmembed.types import EncoderInfo, MMEmbedError
from mmembed_testing.parity import QUERIES, TEXT_DOCUMENTS, assert_embeddings_match

NEMOTRON = Path(__file__).resolve().parents[1] / "fixtures" / "nemotron_colembed"
NEMOTRON_MODEL = str(NEMOTRON / "checkpoint")


@pytest.fixture(scope="module")
def reference() -> dict[str, list[torch.Tensor]]:
    """NVIDIA's reference embeddings of ``TEXT_DOCUMENTS`` (as passages) and ``QUERIES``."""
    with np.load(NEMOTRON / "reference.npz") as data:
        return {
            "text": [torch.from_numpy(data[f"text_{i}"]) for i in range(len(TEXT_DOCUMENTS))],
            "query": [torch.from_numpy(data[f"query_{i}"]) for i in range(len(QUERIES))],
        }


def assert_pooled(vectors: Sequence[Sequence[float]], expected: list[torch.Tensor]) -> None:
    """Adapter vectors are the pooled view of the expected multi-vectors."""
    got = torch.tensor(vectors)  # (n, dim)
    torch.testing.assert_close(got, torch.stack([pool(e) for e in expected]), atol=1e-4, rtol=1e-4)


# -- core ---------------------------------------------------------------------------------


def test_nemotron_text_documents_are_passages_as_in_the_reference(
    reference: dict[str, list[torch.Tensor]],
) -> None:
    encoder = mmembed.load_encoder(NEMOTRON_MODEL, device="cpu", dtype="float32")
    documents = encoder.encode_text_documents(list(TEXT_DOCUMENTS), batch_size=2)
    assert_embeddings_match(documents, reference["text"])
    as_queries = encoder.encode_queries(list(TEXT_DOCUMENTS))
    assert as_queries[0].shape != documents[0].shape  # "Query: query: " is not "passage: "


def test_colqwen_text_documents_have_no_query_augmentation(tiny_colqwen2_5: Path) -> None:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5), device="cpu")
    text = "quarterly revenue by segment"
    (document,) = encoder.encode_text_documents([text])  # (tokens, dim)
    (query,) = encoder.encode_queries([text])  # (tokens + 10, dim)
    # colpali-engine: process_texts is the bare text, process_queries appends ten <|endoftext|>.
    assert query.shape[0] == document.shape[0] + 10
    # Qwen attends causally, so the text's own tokens embed the same in both.
    torch.testing.assert_close(query[: document.shape[0]], document, atol=1e-4, rtol=1e-4)


def test_nomic_text_documents_take_the_search_document_prefix(tiny_nomic: tuple[Path, Path]) -> None:
    text, _ = tiny_nomic
    encoder = mmembed.load_encoder(str(text), device="cpu")
    doc = "Table 2: operating expenses"
    (document,) = encoder.encode_text_documents([doc])
    torch.testing.assert_close(document, encoder.encode_texts([doc], task="search_document")[0])  # type: ignore[attr-defined]
    assert not torch.allclose(document, encoder.encode_queries([doc])[0], atol=1e-3)


class _Symmetric(Encoder):
    """A text model with one encoding for both sides (no document prompt): the base default."""

    info = EncoderInfo(name="symmetric", family="test", kind="single", dim=2, similarity="cosine")
    device, dtype = torch.device("cpu"), torch.float32

    def encode_queries(self, queries: Sequence[str], **kw: object) -> list[torch.Tensor]:
        return [torch.tensor([[float(len(q)), 1.0]]) for q in queries]

    def encode_images(self, images: Sequence[Image.Image], **kw: object) -> list[torch.Tensor]:
        raise MMEmbedError("text only")


def test_symmetric_families_fall_back_to_the_query_side_and_bad_input_is_named() -> None:
    encoder = _Symmetric()
    torch.testing.assert_close(encoder.encode_text_documents(["abc"])[0], torch.tensor([[3.0, 1.0]]))
    with pytest.raises(MMEmbedError, match="text document 1 is a int"):
        encoder.encode_text_documents(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(MMEmbedError, match="list of text documents"):
        encoder.encode_text_documents("one string")


# -- adapters -----------------------------------------------------------------------------


def test_langchain_embed_documents_vs_embed_query(reference: dict[str, list[torch.Tensor]]) -> None:
    from langchain_mmembed import MMEmbedEmbeddings

    embeddings = MMEmbedEmbeddings(model=NEMOTRON_MODEL, device="cpu", dtype="float32")
    assert_pooled(embeddings.embed_documents(list(TEXT_DOCUMENTS)), reference["text"])
    assert_pooled([embeddings.embed_query(q) for q in QUERIES], reference["query"])


def test_llamaindex_text_embeddings_vs_query_embeddings(reference: dict[str, list[torch.Tensor]]) -> None:
    from llama_index.embeddings.mmembed import MMEmbedEmbedding

    embed = MMEmbedEmbedding(model_name=NEMOTRON_MODEL, device="cpu", dtype="float32")
    assert_pooled(embed.get_text_embedding_batch(list(TEXT_DOCUMENTS)), reference["text"])
    assert_pooled([embed.get_text_embedding(TEXT_DOCUMENTS[0])], reference["text"][:1])
    assert_pooled([embed.get_query_embedding(q) for q in QUERIES], reference["query"])


def test_haystack_text_embedder_is_the_query_side(reference: dict[str, list[torch.Tensor]]) -> None:
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder

    embedder = MMEmbedTextEmbedder(model=NEMOTRON_MODEL, device="cpu", dtype="float32")
    outputs = [embedder.run(text=q) for q in QUERIES]
    assert_embeddings_match([torch.tensor(o["multi_embedding"]) for o in outputs], reference["query"])
    assert_pooled([o["embedding"] for o in outputs], reference["query"])


def test_adapters_give_nomic_documents_the_document_prefix(tiny_nomic: tuple[Path, Path]) -> None:
    from llama_index.embeddings.mmembed import MMEmbedEmbedding

    from langchain_mmembed import MMEmbedEmbeddings

    text, _ = tiny_nomic
    encoder = mmembed.load_encoder(str(text), device="cpu")
    doc = "Figure 3: energy use"
    as_document = encoder.encode_texts([doc], task="search_document")[0][0]  # type: ignore[attr-defined]
    as_query = encoder.encode_texts([doc], task="search_query")[0][0]  # type: ignore[attr-defined]
    langchain = MMEmbedEmbeddings(model=str(text), device="cpu")
    llamaindex = MMEmbedEmbedding(model_name=str(text), device="cpu")
    for document, query in (
        (langchain.embed_documents([doc])[0], langchain.embed_query(doc)),
        (llamaindex.get_text_embedding(doc), llamaindex.get_query_embedding(doc)),
    ):
        torch.testing.assert_close(torch.tensor(document), as_document, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(query), as_query, atol=1e-5, rtol=1e-5)
