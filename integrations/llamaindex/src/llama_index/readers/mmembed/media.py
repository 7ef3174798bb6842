"""LlamaIndex reader of audio / video files as one document per time segment."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.readers.base import BasePydanticReader
from llama_index.core.schema import Document

from .pages import HIDDEN_KEYS, page_metadata

logger = logging.getLogger(__name__)

MEDIA_PATH = "media_path"
SPAN_KEYS = ["media", "start", "end", "duration"]


class MediaSegmentReader(BasePydanticReader):
    """Read recordings (WAV, FLAC, MP3, Ogg, M4A, MP4, WebM, MKV, MOV, or folders of them) as
    one ``Document`` per segment, through mmembed's loader (``pip install 'mmembed-core[media]'``).

    Each document's ``id_`` is the segment id an mmembed index uses; its metadata holds the
    page keys of this package (``file_path``, ``file_name``, ``page_label`` / ``page_number`` =
    the 1-based segment number, ``page_count``, ``content_hash``) plus ``media_path`` and the
    time span: ``media`` (``"audio"`` / ``"video"``), ``start``, ``end`` and ``duration`` in
    seconds — the same media keys as the LangChain loader, the Haystack converter and the
    retrievers. Damaged recordings are logged and listed in :attr:`issues`.
    """

    is_remote: bool = False
    segment_seconds: float | None = None
    fps: float = 2.0
    max_frames: int = 64
    media_streams: str = "auto"
    strict: bool = False
    _issues: list[Any] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "MediaSegmentReader"

    @property
    def issues(self) -> list[Any]:
        """Files / segments skipped by the last load (``mmembed.loaders.LoadIssue``)."""
        return self._issues

    def lazy_load_data(  # type: ignore[override]
        self,
        file_path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        extra_info: dict[str, Any] | None = None,
    ) -> Iterator[Document]:
        from mmembed.loaders import MEDIA_GLOBS, MediaSegment, load_documents

        sources = [file_path] if isinstance(file_path, (str, os.PathLike)) else list(file_path)
        self._issues = []
        stream = load_documents(
            [os.fspath(Path(s)) for s in sources],
            segment_seconds=self.segment_seconds,
            fps=self.fps,
            max_frames=self.max_frames,
            media_streams=self.media_streams,
            include=MEDIA_GLOBS,
            strict=self.strict,
            prefetch=0,
        )
        with stream:
            for item in stream:
                if isinstance(item, MediaSegment):
                    yield self._document(item, extra_info)
        for issue in stream.issues:
            logger.warning("MediaSegmentReader skipped %s", issue)
        self._issues = list(stream.issues)

    def load_data(  # type: ignore[override]
        self,
        file_path: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
        extra_info: dict[str, Any] | None = None,
    ) -> list[Document]:
        return list(self.lazy_load_data(file_path, extra_info))

    def _document(self, segment: Any, extra_info: dict[str, Any] | None) -> Document:
        metadata = page_metadata(
            segment.source,
            segment.page,
            segment.content_hash,
            page_count=segment.page_count,
            extra={**(extra_info or {}), **segment.metadata},
        )
        metadata.update({MEDIA_PATH: segment.source, **segment.span_metadata()})
        return Document(
            id_=segment.id,
            text="",
            metadata=metadata,
            excluded_embed_metadata_keys=list(HIDDEN_KEYS),
            excluded_llm_metadata_keys=list(HIDDEN_KEYS),
        )
