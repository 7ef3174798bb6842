"""LlamaIndex: a document per segment of a recording, and retrieved nodes with their time span."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.schema import QueryBundle
from llama_index.readers.mmembed import MediaSegmentReader
from llama_index.retrievers.mmembed import MMEmbedRetriever
from media_fixtures import SPAN_KEYS, build_index, write_talks

import mmembed


def test_reader_gives_one_document_per_segment_with_media_path_and_span(tmp_path):
    talks = write_talks(tmp_path / "talks")
    reader = MediaSegmentReader(segment_seconds=2.0)
    docs = reader.load_data(talks, extra_info={"series": "demo"})
    names = [(d.metadata["file_name"], d.metadata["page_number"]) for d in docs]
    assert names == [("clip.mkv", 1), ("lecture.wav", 1), ("lecture.wav", 2)]
    second = docs[2]
    assert all(key in second.metadata for key in SPAN_KEYS) and second.metadata["series"] == "demo"
    assert (second.metadata["start"], second.metadata["end"]) == (2.0, 4.0)
    assert second.metadata["media_path"] == second.metadata["file_path"] and second.id_
    assert [i.code for i in reader.issues] == ["corrupt_media"]


def test_retriever_returns_nodes_with_their_time_span(tmp_path, monkeypatch: pytest.MonkeyPatch):
    encoder = build_index(write_talks(tmp_path / "talks"), tmp_path / "idx")
    monkeypatch.setattr(mmembed, "load_encoder", lambda *a, **kw: encoder)
    retriever = MMEmbedRetriever(str(tmp_path / "idx"), similarity_top_k=1, image_mode="none")
    (hit,) = retriever.retrieve(QueryBundle("something red"))
    assert Path(hit.node.metadata["file_path"]).name == "clip.mkv"
    assert (hit.node.metadata["start"], hit.node.metadata["media"]) == (0.0, "video")
