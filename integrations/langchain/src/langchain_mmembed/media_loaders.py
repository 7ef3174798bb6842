"""``MediaSegmentLoader``: one LangChain ``Document`` per time segment of an audio / video file."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

from .document_loaders import page_metadata, source_paths

if TYPE_CHECKING:
    from mmembed.loaders import LoadIssue, MediaSegment

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
MEDIA_PATH = "media_path"


class MediaSegmentLoader(BaseLoader):
    """Load recordings (WAV, FLAC, MP3, Ogg, M4A, MP4, WebM, MKV, MOV, or folders of them) as
    one ``Document`` per segment, decoded lazily by mmembed's loader (needs
    ``pip install 'mmembed-core[media]'``).

    Each ``Document`` has ``id`` = the segment id an mmembed index uses, ``page_content`` ``""``
    and ``metadata`` with ``source``, ``page`` (1-based segment number), ``total_pages``,
    ``content_hash``, ``id``, ``media_path`` (the file), ``media`` (``"audio"`` / ``"video"``),
    ``start`` / ``end`` (seconds into the recording) and ``duration``: the same media keys as
    the LlamaIndex reader and the Haystack converter, and as what the retrievers return.
    Damaged recordings are logged and listed in :attr:`issues`; ``strict=True`` raises.
    """

    def __init__(
        self,
        file_path: PathLike | Sequence[PathLike],
        *,
        segment_seconds: float | None = None,
        fps: float = 2.0,
        max_frames: int = 64,
        media_streams: str = "auto",
        strict: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.file_path = file_path
        self.segment_seconds = segment_seconds
        self.fps = fps
        self.max_frames = max_frames
        self.media_streams = media_streams
        self.strict = strict
        self.metadata = dict(metadata or {})
        self.issues: list[LoadIssue] = []
        """Files / segments skipped by the last load, each naming the file and the fix."""

    def lazy_load(self) -> Iterator[Document]:
        """Yield one ``Document`` per segment (decoding is left to whoever embeds it)."""
        from mmembed.loaders import MEDIA_GLOBS, LoadIssue, MediaSegment, load_documents

        self.issues = []
        stream = load_documents(
            source_paths(self.file_path),
            segment_seconds=self.segment_seconds,
            fps=self.fps,
            max_frames=self.max_frames,
            media_streams=self.media_streams,
            include=MEDIA_GLOBS,
            strict=self.strict,
            metadata=self.metadata or None,
            prefetch=0,
        )
        with stream:
            for item in stream:
                if isinstance(item, MediaSegment):
                    yield self._document(item)
                elif item.page == 1:  # a page file named explicitly: not this loader's job
                    self.issues.append(
                        LoadIssue(
                            item.source,
                            None,
                            "is not audio or video",
                            "Load it with PDFPageImageLoader",
                            code="not_media",
                        )
                    )
        for issue in stream.issues:
            logger.warning("MediaSegmentLoader skipped %s", issue)
        self.issues += stream.issues

    def _document(self, segment: MediaSegment) -> Document:
        meta = {
            **segment.metadata,
            **page_metadata(
                source=segment.source,
                page=segment.page,
                total_pages=segment.page_count,
                content_hash=segment.content_hash,
                page_id=segment.id,
            ),
            MEDIA_PATH: segment.source,
            **segment.span_metadata(),
        }
        return Document(id=segment.id, page_content="", metadata=meta)
