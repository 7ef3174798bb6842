"""Sources → an ordered stream of events: unrendered pages, issues, and file boundaries.

Nothing here renders; the stream (or its worker) renders each page when it gets to it.
The generator never keeps a reference to a page it yielded, so a page's image lives only
as long as the consumer keeps it.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from .documents import Document, open_document
from .errors import LoadError, LoadIssue
from .media import MediaFile
from .options import LoaderOptions
from .page import Page
from .segment import MediaSegment
from .sources import SUPPORTED, SourceItem, digest, iter_sources, kind_of, read_head, sniff_kind


@dataclass(frozen=True)
class FileDone:
    """Every page of ``source`` has been handed out."""

    source: str


@dataclass(frozen=True)
class FileSkipped:
    """``source`` was left out, unrendered, because the caller's ``skip`` said so."""

    source: str
    content_hash: str


Event = Page | MediaSegment | LoadIssue | FileDone | FileSkipped


@dataclass
class _RunState:
    real_paths: set[str] = field(default_factory=set)
    hashes: dict[str, str] = field(default_factory=dict)


def produce(sources: Any, options: LoaderOptions) -> Generator[Event, None, None]:
    """Walk ``sources`` lazily and yield one event at a time, in order."""
    state = _RunState()
    for item in iter_sources(sources, options):
        if isinstance(item, LoadIssue):
            yield item
        else:
            yield from _file_events(item, options, state)


def _file_events(item: SourceItem, options: LoaderOptions, state: _RunState) -> Iterator[Event]:
    if item.path is not None:
        real = os.path.realpath(item.path)
        if real in state.real_paths:
            return  # the same file reached twice (e.g. through a symlink): load it once
        state.real_paths.add(real)

    kind = kind_of(item.extension)
    if kind is None:
        try:
            kind = sniff_kind(read_head(item))
        except OSError as exc:
            yield _unreadable(item, exc)
            return
        if kind is None:
            extension = item.extension or "(no extension)"
            yield LoadIssue(
                item.name,
                None,
                f"has an unsupported file type {extension}",
                f"Supported: {SUPPORTED}. Convert it, or leave it out"
                + (f" (exclude=['*{item.extension}'])" if item.extension else ""),
                code="unsupported",
            )
            return

    if kind == "media" and not options.media:
        yield LoadIssue(
            item.name,
            None,
            options.media_refusal or "is an audio / video file, and this loader reads pages only",
            "Load recordings with load_documents() and index them with an "
            "audio/video encoder such as nvidia/omni-embed-nemotron-3b; or leave the file out",
            code="media_not_loaded",
        )
        return

    try:
        file_digest = digest(item)
    except OSError as exc:
        yield _unreadable(item, exc)
        return
    if file_digest.size == 0:
        yield LoadIssue(
            item.name, None, "is empty (0 bytes)", "Re-download or re-export it", code="empty_file"
        )
        return
    earlier = state.hashes.get(file_digest.content_hash)
    if earlier is not None:
        yield LoadIssue(
            item.name,
            None,
            f"has the same bytes as {earlier}, loaded earlier in this run (its pages would get the same ids)",
            "Nothing lost: the content is loaded once; remove the copy to silence this",
            code="duplicate",
        )
        return
    state.hashes[file_digest.content_hash] = item.name
    if options.skip is not None and options.skip(item.name, file_digest.content_hash):
        yield FileSkipped(item.name, file_digest.content_hash)
        return
    metadata = options.metadata_for(item.name)
    if kind == "media":
        yield from _segment_events(item, file_digest.content_hash, metadata, options)
        return

    try:
        document = open_document(item, kind, file_digest.head, options)
    except LoadError as exc:
        yield exc.issue
        return
    except Exception as exc:  # a parser bug on a hostile file must not end the run
        yield _unexpected(item.name, None, exc)
        return
    try:
        yield from _page_events(document, item, file_digest.content_hash, metadata, options)
    finally:
        document.close()
    yield FileDone(item.name)


def _page_events(
    document: Document, item: SourceItem, content_hash: str, metadata: dict[str, Any], options: LoaderOptions
) -> Iterator[Event]:
    page_count = document.page_count
    numbers = options.pages.select(page_count) if options.pages else range(1, page_count + 1)
    if not numbers:
        yield LoadIssue(
            item.name,
            None,
            f"page_range {options.pages} selects no page of this {page_count}-page document",
            "Widen page_range, or leave the file out",
            code="page_range_empty",
        )
        return
    for number in numbers:
        try:
            settings, renderer = document.plan(number - 1)
        except LoadError as exc:
            yield exc.issue
            continue
        except Exception as exc:
            yield _unexpected(item.name, number, exc)
            continue
        yield Page(
            source=item.name,
            page=number,
            page_count=page_count,
            content_hash=content_hash,
            render=settings,
            metadata=dict(metadata),
            renderer=renderer,
            text_reader=document.text_reader(number - 1),
        )


def _segment_events(
    item: SourceItem, content_hash: str, metadata: dict[str, Any], options: LoaderOptions
) -> Iterator[Event]:
    try:
        recording = MediaFile(
            item.name,
            options.media_settings,
            path=item.path,
            data=item.data,
            max_image_pixels=options.max_image_pixels,
        )
    except LoadError as exc:
        yield exc.issue
        return
    except Exception as exc:  # a demuxer bug on a hostile file must not end the run
        yield _unexpected(item.name, None, exc)
        return
    for note in recording.notes:
        yield note.issue
    count = recording.page_count
    numbers = options.pages.select(count) if options.pages else range(1, count + 1)
    if not numbers:
        yield LoadIssue(
            item.name,
            None,
            f"page_range {options.pages} selects no segment of this {count}-segment recording",
            "Widen page_range, or leave the file out",
            code="page_range_empty",
        )
        return
    for number in numbers:
        settings, decoder = recording.plan(number - 1)
        yield MediaSegment(
            source=item.name,
            page=number,
            page_count=count,
            content_hash=content_hash,
            render=settings,
            metadata=dict(metadata),
            decoder=decoder,
        )
    yield FileDone(item.name)


def _unreadable(item: SourceItem, exc: OSError) -> LoadIssue:
    if isinstance(exc, PermissionError):
        return LoadIssue(
            item.name,
            None,
            "cannot be read (permission denied)",
            "Fix its permissions (e.g. `chmod +r`) or leave it out",
            code="unreadable",
        )
    return LoadIssue(
        item.name,
        None,
        f"cannot be read ({exc.strerror or exc})",
        "Check that the file exists and is readable",
        code="unreadable",
    )


def _unexpected(source: str, page: int | None, exc: Exception) -> LoadIssue:
    return LoadIssue(
        source,
        page,
        f"could not be loaded (unexpected {type(exc).__name__}: {exc})",
        "The file is probably damaged; re-export it, or leave it out (and report it if it opens elsewhere)",
        code="load_failed",
    )
