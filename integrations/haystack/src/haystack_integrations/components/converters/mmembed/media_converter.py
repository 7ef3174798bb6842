"""``MediaToSegmentDocuments``: audio / video files → one Haystack ``Document`` per time segment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.components.converters.utils import normalize_metadata
from haystack.dataclasses import ByteStream
from haystack_integrations.document_stores.mmembed.documents import (
    CONTENT_HASH,
    FILE_PATH,
    PAGE_COUNT,
    PAGE_NUMBER,
)

from mmembed.loaders import MEDIA_GLOBS, MediaSegment, load_documents

from .converter import _issue, _loadable

MEDIA_PATH = "media_path"


@component
class MediaToSegmentDocuments:
    """Cut recordings (WAV, FLAC, MP3, Ogg, M4A, MP4, WebM, MKV, MOV, folders of them, or
    ``ByteStream`` objects) into segments, one ``Document`` each (needs
    ``pip install 'mmembed-core[media]'``).

    A document's ``id`` is the segment id an mmembed index uses; its ``meta`` holds
    ``file_path``, ``page_number`` (the 1-based segment number), ``page_count``, ``content_hash``,
    ``media_path`` and the time span — ``media`` (``"audio"`` / ``"video"``), ``start``, ``end``,
    ``duration`` in seconds —, the same media keys as the LangChain loader, the LlamaIndex reader
    and the retrievers. A ``ByteStream`` source travels as the documents' ``blob`` (there is no
    file to decode from later). Damaged recordings come out in ``issues``, never stopping the run.

    ```python
    converter = MediaToSegmentDocuments(segment_seconds=60)
    result = converter.run(sources=["talks/"])
    for doc in result["documents"]:
        print(doc.meta["file_path"], doc.meta["start"], doc.meta["end"])
    ```
    """

    def __init__(
        self,
        segment_seconds: float | None = None,
        fps: float = 2.0,
        max_frames: int = 64,
        media_streams: str = "auto",
    ) -> None:
        self.segment_seconds = segment_seconds
        self.fps = fps
        self.max_frames = max_frames
        self.media_streams = media_streams

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            segment_seconds=self.segment_seconds,
            fps=self.fps,
            max_frames=self.max_frames,
            media_streams=self.media_streams,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaToSegmentDocuments:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document], issues=list[dict[str, Any]])
    def run(
        self,
        sources: list[str | Path | ByteStream],
        meta: dict[str, Any] | list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Convert ``sources`` into segment documents.

        :param sources: File paths, folders (walked recursively, recordings only) or ``ByteStream`` objects.
        :param meta: Metadata for every segment: one dict for all sources, or one per source.
        :returns: ``documents`` (one per segment, in order) and ``issues`` (one dict per file or
            segment that could not be loaded, as from ``PDFToPageImageDocuments``).
        """
        metas = normalize_metadata(meta, sources_count=len(sources))
        documents: list[Document] = []
        issues: list[dict[str, Any]] = []
        for source, source_meta in zip(sources, metas, strict=True):
            loadable, in_memory, bytestream_meta = _loadable(source)
            with load_documents(
                loadable,
                segment_seconds=self.segment_seconds,
                fps=self.fps,
                max_frames=self.max_frames,
                media_streams=self.media_streams,
                include=MEDIA_GLOBS,
                prefetch=0,
            ) as stream:
                for item in stream:
                    if isinstance(item, MediaSegment):
                        blob = source if in_memory and isinstance(source, ByteStream) else None
                        documents.append(self._document(item, {**bytestream_meta, **source_meta}, blob))
                issues += [_issue(i) for i in stream.issues]
        return {"documents": documents, "issues": issues}

    @staticmethod
    def _document(segment: MediaSegment, meta: dict[str, Any], blob: ByteStream | None) -> Document:
        facts = {
            FILE_PATH: segment.source,
            PAGE_NUMBER: segment.page,
            PAGE_COUNT: segment.page_count,
            CONTENT_HASH: segment.content_hash,
            MEDIA_PATH: segment.source,
            **segment.span_metadata(),
        }
        return Document(id=segment.id, blob=blob, meta={**meta, **facts})
