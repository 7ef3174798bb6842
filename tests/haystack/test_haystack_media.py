"""Haystack: a Document per segment (from paths or ByteStreams), and retrieved segments with their span."""

from __future__ import annotations

from pathlib import Path

from haystack.dataclasses import ByteStream
from haystack_integrations.components.converters.mmembed import MediaToSegmentDocuments
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore
from media_fixtures import SPAN_KEYS, build_index, write_talks


def test_converter_gives_one_document_per_segment_with_its_span(tmp_path):
    talks = write_talks(tmp_path / "talks")
    converter = MediaToSegmentDocuments.from_dict(MediaToSegmentDocuments(segment_seconds=2.0).to_dict())
    wav = ByteStream(data=(talks / "lecture.wav").read_bytes(), meta={"file_path": "memo.wav"})
    result = converter.run(sources=[talks, wav], meta={"series": "demo"})
    docs = result["documents"]
    names = [(Path(d.meta["file_path"]).name, d.meta["page_number"]) for d in docs]
    assert names == [
        ("clip.mkv", 1),
        ("lecture.wav", 1),
        ("lecture.wav", 2),
        ("memo.wav", 1),
        ("memo.wav", 2),
    ]
    assert all(all(key in d.meta for key in SPAN_KEYS) and d.meta["series"] == "demo" for d in docs)
    assert (docs[2].meta["start"], docs[2].meta["end"]) == (2.0, 4.0) and docs[2].blob is None
    assert docs[3].blob is wav and docs[3].id == docs[1].id  # same bytes, same segment ids
    assert [i["code"] for i in result["issues"]] == ["corrupt_media"]


def test_store_retrieval_returns_segments_with_their_span(tmp_path):
    encoder = build_index(write_talks(tmp_path / "talks"), tmp_path / "idx")
    store = MMEmbedDocumentStore(str(tmp_path / "idx"))
    (doc,) = store.embedding_retrieval(encoder.encode_queries(["440 Hz"])[0], top_k=1)
    assert Path(doc.meta["file_path"]).name == "lecture.wav" and (doc.meta["start"], doc.meta["end"]) == (
        0.0,
        2.0,
    )
