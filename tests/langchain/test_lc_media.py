"""LangChain: a Document per segment of a recording, and retrieved segments with their time span."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_fixtures import SPAN_KEYS, build_index, write_talks

import mmembed
from langchain_mmembed import MediaSegmentLoader, MMEmbedRetriever


def test_loader_gives_one_document_per_segment_with_its_span(tmp_path):
    talks = write_talks(tmp_path / "talks")
    loader = MediaSegmentLoader(talks, segment_seconds=2.0, metadata={"series": "demo"})
    docs = list(loader.lazy_load())
    names = [(Path(d.metadata["source"]).name, d.metadata["page"]) for d in docs]
    assert names == [("clip.mkv", 1), ("lecture.wav", 1), ("lecture.wav", 2)]  # poster.png left out
    second = docs[2]
    assert all(key in second.metadata for key in SPAN_KEYS) and second.metadata["series"] == "demo"
    assert (second.metadata["start"], second.metadata["end"], second.metadata["media"]) == (2.0, 4.0, "audio")
    assert second.id == second.metadata["id"] and second.page_content == ""
    assert docs[0].metadata["media"] == "video" and docs[0].metadata["media_path"].endswith("clip.mkv")
    assert [i.code for i in loader.issues] == ["corrupt_media"]


def test_retriever_returns_segments_with_their_time_span(tmp_path, monkeypatch: pytest.MonkeyPatch):
    encoder = build_index(write_talks(tmp_path / "talks"), tmp_path / "idx")
    monkeypatch.setattr(mmembed, "load_encoder", lambda *a, **kw: encoder)
    docs = MMEmbedRetriever(index=str(tmp_path / "idx"), k=1).invoke("the 3000 Hz part")
    meta = docs[0].metadata
    assert Path(meta["source"]).name == "lecture.wav" and (meta["start"], meta["end"]) == (2.0, 4.0)
