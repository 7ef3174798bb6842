"""Index documents: load pages, encode them in batches, commit each batch to an index.

``--backfill-text`` (reading text into an existing index) is in :mod:`mmembed.text_backfill`.

Each batch is one atomic commit, so a killed run keeps every batch committed before it
and a re-run picks up where it stopped: a file whose pages are all stored with the same
content hash is skipped unrendered, a partly stored file is completed, and a changed file
gets its new pages first and loses its old ones only once the new ones are committed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .index.protocol import IndexBackend, PageInput, page_id
from .loaders import (
    DEFAULT_FPS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DocumentStream,
    Item,
    LoaderOptions,
    LoadIssue,
    MediaSegment,
    MediaSettings,
    Page,
    make_thumbnail,
)
from .loaders.errors import NOTE_CODES
from .text_backfill import BackfillReport as BackfillReport  # public here too (older callers)
from .text_backfill import backfill_text as backfill_text
from .types import MMEmbedError
from .write_behind import WriteBehind

if TYPE_CHECKING:
    from .encoders.base import Encoder
    from .explain import PatchLayout


@dataclass
class IndexReport:
    """What one indexing run did."""

    pages_indexed: int = 0
    """Records stored: pages and media segments."""
    segments_indexed: int = 0
    files_indexed: list[str] = field(default_factory=list)
    files_unchanged: list[str] = field(default_factory=list)
    files_replaced: list[str] = field(default_factory=list)
    issues: list[LoadIssue] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when nothing at all could be loaded although something was asked for."""
        return bool(self.pages_indexed or self.files_unchanged) or not self.issues

    def summary(self) -> str:
        lines = [
            f"indexed {self.pages_indexed} page(s)"
            + (f" ({self.segments_indexed} audio/video segment(s))" if self.segments_indexed else "")
            + f" from {len(self.files_indexed)} file(s); "
            f"{len(self.files_unchanged)} unchanged file(s) skipped; "
            f"{len(self.files_replaced)} changed file(s) replaced; {len(self.issues)} problem(s)"
        ]
        lines += [f"  {'note' if issue.code in NOTE_CODES else 'skipped'}: {issue}" for issue in self.issues]
        return "\n".join(lines)


class _Progress:
    """tqdm when asked for, else nothing."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(unit="page", desc="indexing", dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def index_documents(
    sources: str | os.PathLike[str] | Iterable[Any],
    index: IndexBackend,
    encoder: Encoder,
    *,
    batch_size: int = 8,
    dpi: int = 144,
    max_pixels: int | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    password: str | dict[str, str] | None = None,
    include: str | list[str] | tuple[str, ...] | None = None,
    exclude: str | list[str] | tuple[str, ...] | None = None,
    strict: bool = False,
    metadata: dict[str, Any] | Callable[[str], dict[str, Any]] | None = None,
    thumbnails: bool = True,
    progress: bool = False,
    segment_seconds: float | None = None,
    fps: float = DEFAULT_FPS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    media_streams: str = "auto",
    text: bool = True,
    write_behind: bool = True,
) -> IndexReport:
    """Render every page of ``sources`` (PDFs, images, folders), embed and store it.

    Audio and video files are cut into segments (see :func:`mmembed.loaders.load_documents`
    for ``segment_seconds``, ``fps``, ``max_frames``, ``media_streams``) and embedded with
    ``encoder.encode_media``; each segment is a record with ``media``, ``start``, ``end`` and
    ``duration`` in its metadata. ``text`` (default on) stores each page's own text layer
    (PDF, Office through its converted PDF; images and scans have none) for text / hybrid
    search, in the same commit as its vectors. ``write_behind`` (default on): each batch is
    written (thumbnails, upsert) in a worker thread while the next one encodes (see
    :mod:`mmembed.write_behind`); off, inline. With an encoder that cannot take audio or video, recordings
    are reported as ``media_not_loaded`` issues (naming the encoder) and pages still index.

    >>> report = index_documents("examples/data", index, encoder)  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    """
    index.encoder.check_compatible(encoder.info)
    report = IndexReport()
    stored = index.sources()  # source -> content hash of what is stored
    replaced_hashes: dict[str, str] = {}

    hashes: dict[str, str] = {}  # source -> content hash, of every file this run reads
    page_counts: dict[str, int] = {}

    def skip(source: str, content_hash: str) -> bool:
        hashes[source] = content_hash
        old = stored.get(source)
        if old is None:
            return False
        if old != content_hash:
            replaced_hashes[source] = content_hash
            return False
        if is_source_complete(index, source, content_hash):
            report.files_unchanged.append(source)
            return True
        return False  # a run was killed part-way through this file: complete it

    takes_media = _takes_media(encoder)
    options = LoaderOptions(
        dpi=dpi,
        # Render up to a whole batch (at most 16 pages) ahead while one encodes (issue 28).
        prefetch=max(LoaderOptions.prefetch, min(batch_size, 16)),
        max_pixels=max_pixels,
        max_image_pixels=max_image_pixels,
        password=password,
        include=include,
        exclude=exclude,
        strict=strict,
        metadata=metadata,
        skip=skip,
        media=takes_media,
        media_settings=MediaSettings(
            segment_seconds=segment_seconds, fps=fps, max_frames=max_frames, streams=media_streams
        ),
        media_refusal=None
        if takes_media
        else f"is an audio / video file, and the {encoder.info.family} encoder ({encoder.info.name}) "
        "cannot encode audio or video",
    )
    stream: DocumentStream[Item] = DocumentStream(sources, options)
    bar = _Progress(progress)
    batch: list[Item] = []
    finished_sources: set[str] = set()

    # Issue 28: each batch's write (thumbnails, upsert) runs behind the next batch's encoding.
    writer = WriteBehind(enabled=write_behind)

    def flush() -> None:
        if not batch:
            return
        items = list(batch)  # the writer keeps these while the next batch fills
        batch.clear()
        embeddings, layouts = _encode(encoder, items)
        for p, emb in zip(items, embeddings, strict=True):
            if emb.ndim != 2 or emb.shape[0] == 0:
                # A page stored without vectors would silently never be found.
                raise MMEmbedError(
                    f"{p.source} page {p.page}: the encoder returned an embedding of shape "
                    f"{tuple(emb.shape)}; nothing was stored for this batch. Check the model."
                )
        # What needs the encoder or the page's document (layout, text) is read here, in this thread.
        facts = [
            (
                p.record_metadata()
                if isinstance(p, MediaSegment)
                else {
                    **p.metadata,
                    "page_count": p.page_count,
                    **_layout_metadata(encoder, p, emb, layouts, i),
                },
                (p.text or None) if text and isinstance(p, Page) else None,
            )
            for i, (p, emb) in enumerate(zip(items, embeddings, strict=True))
        ]
        writer.submit(lambda: write(items, embeddings, facts))

    def write(
        items: list[Item], embeddings: list[torch.Tensor], facts: list[tuple[dict[str, Any], str | None]]
    ) -> None:
        inputs = [
            PageInput(
                embedding=emb,
                source=p.source,
                page=p.page,
                content_hash=p.content_hash,
                metadata=metadata,
                thumbnail=_thumbnail(p) if thumbnails else None,
                id=p.id,
                text=page_text,
            )
            for p, emb, (metadata, page_text) in zip(items, embeddings, facts, strict=True)
        ]
        report.ids += index.upsert(inputs)
        report.pages_indexed += len(inputs)
        report.segments_indexed += sum(isinstance(p, MediaSegment) for p in items)
        for p in items:
            page_counts[p.source] = p.page_count
            if p.source not in report.files_indexed:
                report.files_indexed.append(p.source)
            if p.page == p.page_count:
                finished_sources.add(p.source)
            p.release()
        bar.update(len(items))

    try:
        try:
            for page in stream:
                if batch and starts_new_batch(batch, page, batch_size):
                    flush()
                batch.append(page)
                if len(batch) >= batch_size:
                    flush()
            flush()
        finally:
            writer.close()  # waits for the write in flight: a committed batch is never cut
    finally:
        bar.close()
        report.issues = list(stream.issues)
    finished_sources |= _record_skipped_pages(index, report.issues, hashes, page_counts)
    # Old pages of a changed file go only once its new pages are all committed.
    for source, new_hash in replaced_hashes.items():
        if source in finished_sources and is_source_complete(index, source, new_hash):
            index.delete(where={"source": source, "content_hash": {"$ne": new_hash}})
            report.files_replaced.append(source)
    return report


def starts_new_batch(batch: list[Item], item: Item, batch_size: int) -> bool:
    """Whether ``item``, the first of a new file, must open a batch of its own: when the rest of
    its file does not fit beside ``batch``. So a batch never holds part of a file beside other
    files, and a file longer than a batch starts one and is cut at the same pages every run.

    Why: a page's vectors depend (in their last bits) on the pages sharing its batch (padding
    length, GEMM blocking), and a resumed run skips the files already stored and redoes a partly
    stored one from its first page. With these boundaries it re-forms the very batches of a clean
    build, so a resumed index is byte-equal to it in every storage mode (an int8 value could
    otherwise land one rounding step away)."""
    if item.source == batch[-1].source:
        return False
    remaining = max(int(item.page_count) - int(item.page) + 1, 1)
    return len(batch) + remaining > batch_size


def _record_skipped_pages(
    index: IndexBackend, issues: list[LoadIssue], hashes: dict[str, str], page_counts: dict[str, int]
) -> set[str]:
    """Store each page the loader skipped as a record without vectors (never a search
    result) so that its file counts as complete and an unchanged re-run is a no-op; returns
    the sources whose last page was among them."""
    pages = [
        PageInput(
            embedding=torch.empty(0, index.encoder.dim),  # (0, dim): nothing to search
            source=issue.source,
            page=issue.page,
            content_hash=hashes[issue.source],
            metadata={"page_count": page_counts[issue.source], "skipped": issue.reason},
            id=page_id(hashes[issue.source], issue.page),
        )
        for issue in issues
        if issue.page is not None and issue.source in hashes and issue.source in page_counts
    ]
    if pages:
        index.upsert(pages)
    return {p.source for p in pages if p.page == page_counts[p.source]}


def _takes_media(encoder: Encoder) -> bool:
    """Whether the encoder's family implements ``encode_media`` (the base class only refuses)."""
    from .encoders.base import Encoder as BaseEncoder

    return type(encoder).encode_media is not BaseEncoder.encode_media


def _encode(encoder: Encoder, batch: list[Item]) -> tuple[list[torch.Tensor], dict[int, PatchLayout | None]]:
    """Embeddings in batch order: pages through ``encode_pages``, segments through
    ``encode_media``; both run before anything of the batch is stored. With them, the patch
    layouts the encoder read off its own processor output, by batch position (pages missing
    there get theirs from ``page_layout``)."""
    pages = [i for i, item in enumerate(batch) if not isinstance(item, MediaSegment)]
    segments = [i for i, item in enumerate(batch) if isinstance(item, MediaSegment)]
    out: list[torch.Tensor | None] = [None] * len(batch)
    layouts: dict[int, PatchLayout | None] = {}
    if pages and getattr(encoder, "text_only", False):  # issue 28: text models index the text layer
        texts = [_page_text(batch[i]) for i in pages]
        for i, emb in zip(pages, encoder.encode_text_documents(texts), strict=True):
            out[i] = emb
    elif pages:
        images, given = encoder.encode_pages([batch[i].image for i in pages])  # type: ignore[union-attr]
        for i, emb in zip(pages, images, strict=True):
            out[i] = emb
        if given is not None:
            layouts.update(zip(pages, given, strict=True))
    if segments:
        clips = encoder.encode_media([batch[i].clip for i in segments])  # type: ignore[union-attr]
        if len(clips) != len(segments):
            raise MMEmbedError(
                f"the {encoder.info.family} encoder returned {len(clips)} embeddings for {len(segments)} "
                "media segments; nothing was stored for this batch. Check the model."
            )
        for i, emb in zip(segments, clips, strict=True):
            out[i] = emb
    return [emb for emb in out if emb is not None], layouts


def _page_text(item: Item) -> str:
    """A page's own text layer (``""`` for images and scanned pages): what a text-only
    encoder (``encoder.text_only``, e.g. a sentence-transformers ColBERT model) indexes.
    Read through the loader's own open document, so an encrypted PDF's ``password`` and an
    Office file's converted PDF apply; the very text stored for text search."""
    return item.text if isinstance(item, Page) else ""


def _layout_metadata(
    encoder: Encoder,
    page: Item,
    embedding: torch.Tensor,
    layouts: dict[int, PatchLayout | None],
    position: int,
) -> dict[str, Any]:
    """The page's patch layout under :data:`~mmembed.explain.LAYOUT_KEY` (similarity maps from
    stored vectors): the one the encoder gave at ``position`` of its batch (``layouts``), else
    from ``page_layout`` (a second processor run); nothing for media segments and families
    without one (:func:`mmembed.explain.encoded_layout`)."""
    from .explain import LAYOUT_KEY, encoded_layout

    if isinstance(page, MediaSegment):
        return {}
    given = [layouts[position]] if position in layouts else None  # None: ask page_layout
    layout = encoded_layout(encoder, page.image, embedding, given, 0)
    return {} if layout is None else {LAYOUT_KEY: layout}


def _thumbnail(item: Item) -> bytes | None:
    """A page's thumbnail; for video, the frame in the middle of the segment; none for sound."""
    if isinstance(item, MediaSegment):
        frames = item.clip.frames
        return make_thumbnail(frames[len(frames) // 2]) if frames else None
    return make_thumbnail(item.image)


def is_source_complete(index: IndexBackend, source: str, content_hash: str) -> bool:
    """Whether ``index`` holds every page of ``source`` at version ``content_hash``.

    A source counts as indexed only when all its pages are in (their count reaches the
    ``page_count`` its pages record): a run killed mid-file leaves it incomplete, and the
    next run completes it instead of skipping it. Any :class:`IndexBackend` works — the
    pipelines (single-process and Ray) use this to skip a file and to decide when a changed
    file's old pages may go.
    """
    where = {"source": source, "content_hash": content_hash}
    first = next(iter(index.records(where)), None)
    if first is None:
        return False
    expected = first.metadata.get("page_count")
    return isinstance(expected, int) and index.count(where) >= expected
