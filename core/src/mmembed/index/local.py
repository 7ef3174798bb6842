"""The embedded on-disk index: one folder, one writer, many readers, crash-safe batches.

Long because ``open_index``, public from this module, keeps its three typed overloads and
its full docstring here (about 120 lines); the :class:`LocalIndex` facade itself is under 300.

:class:`LocalIndex` is the facade that composes the parts, each in its own module:

- :mod:`.options` — creation options, their checks, the creation of a new folder, and the
  stored options as properties (:class:`~.options.StoredOptions`);
- :mod:`.snapshot` — the read side: read transactions, cached snapshots, records, vectors;
- :mod:`.plan` — the search plan (filter → first stage → shortlist → exact rerank → hits);
- :mod:`.writer` — the commit protocol, deletes, compaction, HNSW graph extension;
- :mod:`.recovery` — what a new writer repairs of a killed writer's leftovers;
- :mod:`.text_side` — the page-text store of hybrid search (upgrade, writes, reads);
- :mod:`.files` — every file operation the index makes in its folder.

Opening never takes the writer lock: the first ``add``/``upsert``/``delete``/``compact``
(or :meth:`LocalIndex.lock_for_writing`) does, and keeps it until :meth:`LocalIndex.close`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import torch

from ..scoring import EmbeddingsLike
from ..types import EncoderInfo, MMEmbedError, PageRecord, SearchHit
from . import format as fmt
from . import text_side
from .dedupe import check_dedupe
from .errors import check_writable
from .filters import Filter
from .first_stage import shortlist
from .fusion import search_options
from .hybrid import missing_text_store, search_by_mode
from .hybrid_scan import search_hybrid
from .lock import WriterLock
from .options import StoredOptions, open_folder
from .options import check_encoder as _check_encoder  # noqa: F401  (mmembed-qdrant imports it from here)
from .plan import search_snapshot
from .protocol import PageInput
from .recovery import lock_and_recover
from .segments import append_rows
from .shared import SharedIndex, open_shared
from .snapshot import IndexSnapshots
from .text import DEFAULT_TOKENIZER
from .writer import DEFAULT_SEGMENT_BYTES, IndexWriter, pages_to_delete

__all__ = ["DEFAULT_SEGMENT_BYTES", "LocalIndex", "open_index"]

# `append_rows` and `shortlist` are handed to the parts at call time from this module's
# namespace: the crash and first-stage tests replace them here to inject a kill or count calls.


class LocalIndex(StoredOptions):
    """Folder-based index implementing :class:`~mmembed.index.protocol.IndexBackend`.

    Opening never takes the writer lock: the first ``add``/``upsert``/``delete``/``compact``
    (or :meth:`lock_for_writing`) does, and keeps it until :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: EncoderInfo | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        storage: str | None = None,
        pooling: int | None = None,
        dtype: str | None = None,
        keep_thumbnails: bool = True,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        first_stage: str | None = None,
        text_tokenizer: str | None = DEFAULT_TOKENIZER,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self.readonly = readonly
        self._mutex = threading.RLock()
        self._closed = True
        opened = open_folder(
            self.path,
            encoder,
            create=create,
            readonly=readonly,
            storage=storage,
            pooling=pooling,
            dtype=dtype,
            keep_thumbnails=keep_thumbnails,
            first_stage=first_stage,
            text_tokenizer=text_tokenizer,
        )
        # This open made the folder an index (a reader's typo shows here).
        self.created_now = opened.created_now
        self.manifest = opened.manifest
        self._dtype = opened.codec
        self._folder_readonly = opened.folder_readonly
        self._conn = opened.conn
        self._lock = WriterLock(self.path / fmt.LOCK_FILE, self.path)
        self._snapshots = IndexSnapshots(self.path, self.encoder, self._dtype, self._conn, self._mutex)
        self._codes = self._snapshots.codes
        self._writer = IndexWriter(self.manifest, self._snapshots, segment_bytes)
        self._closed = False

    # ------------------------------------------------------------------ properties

    @property
    def segment_bytes(self) -> int:
        """A new segment file is started once the active one holds this many bytes."""
        return self._writer.segment_bytes

    @segment_bytes.setter
    def segment_bytes(self, value: int) -> None:
        self._writer.segment_bytes = int(value)

    @property
    def graph_extend_pages(self) -> int:
        """HNSW: writes extend the graph once this many pages (or a quarter of it) wait."""
        return self._writer.graph_extend_pages

    @graph_extend_pages.setter
    def graph_extend_pages(self, value: int) -> None:
        self._writer.graph_extend_pages = int(value)

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "writer" if not self._closed and self._lock.held else "reader"
        pooled = f", pooling={self.pooling}" if self.pooling > 1 else ""
        return f"LocalIndex({str(self.path)!r}, encoder={self.encoder.name!r}, storage={self.storage}{pooled}, {mode})"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the writer lock (if held), the database and the memory maps."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._snapshots.close()
            try:
                self._conn.close()
            finally:
                self._lock.release()

    def __enter__(self) -> LocalIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------ writing

    def lock_for_writing(self) -> None:
        """Take the writer lock now (fail fast with :class:`IndexLockedError`) and repair
        what a killed writer left behind. Writes call this themselves."""
        with self._mutex:
            held = self._lock.held
            check_writable(
                self.path,
                closed=self._closed,
                readonly=self.readonly,
                held=held,
                folder_readonly=self._folder_readonly,
            )
            if not held:
                lock_and_recover(
                    self._lock, self.path, self._conn, self.encoder, self._dtype, self.first_stage
                )

    def add(self, pages: Sequence[PageInput]) -> list[str]:
        """Store ``pages`` as one atomic batch; an id already stored is an error."""
        return self._write(pages, replace=False)

    def upsert(self, pages: Sequence[PageInput], *, pooled: bool = False) -> list[str]:
        """Store ``pages`` as one atomic batch, replacing stored pages with the same ids.

        ``pooled=True`` says the vectors were already pooled by this index's factor (copied
        from an index with the same ``pooling``, as ``mmembed migrate`` does): stored as given."""
        return self._write(pages, replace=True, pooled=pooled)

    def _write(self, pages: Sequence[PageInput], *, replace: bool, pooled: bool = False) -> list[str]:
        with self._mutex:
            self.lock_for_writing()
            return self._writer.write(pages, replace=replace, pooled=pooled, append=append_rows)

    def prepare_text_store(self, tokenizer: str | None = None) -> dict[str, bool]:
        """Hybrid (issue 25): create the text store of an index built before text search
        (``tokenizer`` recorded in the manifest) and rebuild a damaged FTS index from the stored
        text. Returns ``{"created": ..., "rebuilt": ...}``. Part of ``--backfill-text``
        (:func:`mmembed.pipeline.backfill_text`)."""
        with self._mutex:
            self.lock_for_writing()
            manifest, done = text_side.prepare_text_store(self._snapshots, self.manifest, tokenizer)
            self.manifest = self._writer.manifest = manifest
            return done

    def pages_without_text(self) -> list[tuple[str, str, int, str]]:
        """``(id, source, page, content_hash)`` of every page without stored text."""
        return text_side.pages_without_text(self._snapshots, self.manifest)

    def store_texts(self, texts: Sequence[tuple[str, str]]) -> int:
        """Store ``(page id, text)`` pairs in one transaction; returns how many pages got text."""
        if self.manifest.text_tokenizer is None:
            raise missing_text_store(self.path)
        with self._mutex:
            self.lock_for_writing()
            return text_side.store_texts(self._snapshots, texts)

    def extend_graph(self, *, force: bool = True) -> int:
        """HNSW first stage: add the pages stored since the graph was last built to it;
        returns how many were added. Writes do this themselves once
        ``graph_extend_pages`` pages (or a quarter of the graph) are waiting (searches scan
        those exactly meanwhile); call it after bulk indexing to cover everything."""
        if self.first_stage not in ("hnsw", "plaid"):
            raise MMEmbedError(
                f"the index at {self.path} has no HNSW or PLAID first stage (first_stage={self.first_stage!r})"
            )
        with self._mutex:
            self.lock_for_writing()
            return self._writer.extend_graph(force=force)

    def delete(self, ids: Sequence[str] | None = None, *, where: Filter | None = None) -> int:
        """Delete pages whose id is in ``ids`` and (if given) that match ``where``, in one
        transaction; returns how many were deleted. ``where={}`` matches every page."""
        matching = pages_to_delete(ids, where)
        with self._mutex:
            self.lock_for_writing()
            return self._writer.delete(matching)

    def compact(self) -> int:
        """Rewrite live vectors into fresh segments, dropping the space of deleted and
        replaced pages. Readers keep working meanwhile. Returns the bytes reclaimed."""
        with self._mutex:
            self.lock_for_writing()
            return self._writer.compact()

    def repair(self) -> dict[str, Any]:
        """Rewrite first-stage side data that no longer matches its checksums: sign-bit codes
        are recomputed from the stored vectors, a damaged or missing HNSW graph is rebuilt.
        Returns ``{"codes_rewritten": [files], "graph_rebuilt": bool}`` (``mmembed index --repair``)."""
        with self._mutex:
            self.lock_for_writing()
            return self._writer.repair()

    # ------------------------------------------------------------------ reading

    def count(self, where: Filter | None = None) -> int:
        return self._snapshots.count(where)

    def get(self, ids: Sequence[str]) -> list[PageRecord | None]:
        """Records for ``ids`` in order (``None`` for an unknown id)."""
        return self._snapshots.get(ids)

    def get_embeddings(self, ids: Sequence[str]) -> list[torch.Tensor | None]:
        """Stored vectors ``(n_vectors, dim)`` as float32 for ``ids`` (``None`` if unknown,
        ``(0, dim)`` for a page stored without vectors)."""
        return self._snapshots.get_embeddings(ids)

    def records(self, where: Filter | None = None) -> Iterator[PageRecord]:
        """Every matching record in insertion order, fetched in pages of 256."""
        return self._snapshots.records(where)

    def sources(self) -> dict[str, str]:
        """Map of every stored source to its content hash (of its most recently stored page)."""
        return self._snapshots.sources()

    def search(
        self,
        queries: EmbeddingsLike | None,
        k: int = 10,
        where: Filter | None = None,
        *,
        candidates: int | None = None,
        exact: bool = False,
        mode: str = "visual",
        texts: Sequence[str] | str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
        dedupe: str | float | None = None,
    ) -> list[list[SearchHit]]:
        """Top-``k`` pages for each query, best first, among pages matching ``where``
        (a pre-filter: ``k`` results whenever ``k`` pages match). Pages stored without
        vectors are never results.

        An index created with ``first_stage="binary"`` (Hamming MaxSim over its sign-bit
        codes), ``"hnsw"`` (a graph over pooled page vectors) or ``"plaid"`` (token centroids
        and residual codes; pages either does not cover yet are all kept) first shortlists the
        ``candidates`` (default :data:`~mmembed.index.first_stage.DEFAULT_CANDIDATES`, plaid
        :data:`~mmembed.index.plaid_search.DEFAULT_CANDIDATES`) most promising pages per query
        and scores only those exactly; other indexes score every page exactly unless
        ``candidates=C`` is given (multi-vector indexes; codes are then made in memory).
        Returned scores are always exact; ``exact=True`` forces the full scan. The stages
        are in :mod:`mmembed.index.plan`.

        ``mode="text"`` ranks pages by their own text (FTS5 ``bm25()``) for ``texts`` (one query
        string per query; ``queries`` may then be ``None``); ``mode="hybrid"`` fuses both ranked
        lists by reciprocal rank fusion (``rrf_k``, 60 by default) or, given ``alpha``, by the
        weighted sum ``alpha * visual + (1 - alpha) * text`` of min-max normalised scores. Hits of
        these modes say which side(s) found them (:attr:`SearchHit.matches`); see
        :mod:`mmembed.index.hybrid`.

        ``dedupe="content"`` (same file bytes and page) or ``dedupe=0.95`` (near-identical
        vectors) keeps one hit of each group of copies (visual mode; :mod:`mmembed.index.dedupe`)."""
        text_side.check_k(k)
        options = search_options(mode, alpha, rrf_k)
        rule = check_dedupe(dedupe)
        if rule is not None and options.mode != "visual":
            raise MMEmbedError(f"dedupe= works with mode='visual' only, not mode={options.mode!r}")
        if options.mode == "hybrid":  # issue 25: both sides in one read, the text side in a thread
            tokenizer = self.manifest.text_tokenizer
            return search_hybrid(
                self._snapshots, tokenizer, options, k, queries, texts, where,
                index_stage=self.first_stage, candidates=candidates, exact=exact, shortlist_fn=shortlist,
            )  # fmt: skip
        if options.mode != "visual":  # text (issue 25)
            return search_by_mode(
                options,
                k,
                queries,
                texts,
                lambda vectors, depth: self.search(vectors, depth, where, candidates=candidates, exact=exact),
                lambda t, n: self.search_text(t, n, where),
            )
        if queries is None:
            raise MMEmbedError("search() needs query embeddings (only mode='text' searches with texts alone)")
        return search_snapshot(
            self._snapshots,
            queries,
            k,
            where,
            index_stage=self.first_stage,
            candidates=candidates,
            exact=exact,
            shortlist_fn=shortlist,
            dedupe=rule,
        )

    def search_text(
        self, texts: Sequence[str] | str, k: int = 10, where: Filter | None = None
    ) -> list[list[SearchHit]]:
        """Top-``k`` pages by their own text (FTS5 ``bm25()``) for each query string, among
        pages matching ``where``. Query text is always taken as plain words."""
        return text_side.search_text(self._snapshots, self.manifest, texts, k, where)

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        """The stored page text of ``ids`` in order (``None``: unknown id, or a page without text)."""
        return text_side.get_texts(self._snapshots, self.manifest, ids)

    def info(self) -> dict[str, Any]:
        """Summary for ``mmembed info``: sizes, encoder, storage format, pages with text
        (built by :func:`mmembed.index.summary.summarize`, which the CLI also uses)."""
        return self._snapshots.info(self.manifest)


@overload
def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = ...,
    *,
    create: bool = ...,
    readonly: bool = ...,
    storage: str | None = ...,
    pooling: int | None = ...,
    dtype: str | None = ...,
    keep_thumbnails: bool = ...,
    first_stage: str | None = ...,
    text_tokenizer: str | None = ...,
    shared: Literal[False] = ...,
) -> LocalIndex: ...
@overload
def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = ...,
    *,
    create: bool = ...,
    readonly: bool = ...,
    storage: str | None = ...,
    pooling: int | None = ...,
    dtype: str | None = ...,
    keep_thumbnails: bool = ...,
    first_stage: str | None = ...,
    text_tokenizer: str | None = ...,
    shared: Literal[True],
) -> SharedIndex: ...
@overload
def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = ...,
    *,
    create: bool = ...,
    readonly: bool = ...,
    storage: str | None = ...,
    pooling: int | None = ...,
    dtype: str | None = ...,
    keep_thumbnails: bool = ...,
    first_stage: str | None = ...,
    text_tokenizer: str | None = ...,
    shared: bool,
) -> LocalIndex | SharedIndex: ...


def open_index(
    path: str | os.PathLike[str],
    encoder: EncoderInfo | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    storage: str | None = None,
    pooling: int | None = None,
    dtype: str | None = None,
    keep_thumbnails: bool = True,
    first_stage: str | None = None,
    text_tokenizer: str | None = DEFAULT_TOKENIZER,
    shared: bool = False,
) -> LocalIndex | SharedIndex:
    """Open the index in folder ``path``, creating it when missing (needs ``encoder``).

    To read an index that must already exist, pass ``create=False`` (or ``readonly=True``): a
    mistyped path then raises :class:`IndexNotFoundError` instead of becoming a new empty index.
    A :class:`~mmembed.Retriever` also refuses to search an index this very open created empty.

    ``encoder=None`` opens with the stored encoder (for readers such as ``mmembed info``);
    otherwise the stored one must match it (:class:`EncoderMismatchError`).

    Storage options, recorded in the manifest when the index is created:
    ``storage`` (``float16`` by default, ``bfloat16``, ``float32``, or ``int8``: per-token
    scaled, about half of float16's bytes) and ``pooling`` (2-4: hierarchical token pooling
    of each page at write time, multi-vector indexes only; needs scipy). Left at ``None`` an
    existing index keeps its own; given, they must equal the stored ones
    (:class:`IndexOptionError` names the option). ``dtype`` is the older name of ``storage``
    and, like ``keep_thumbnails``, only applies at creation.
    ``first_stage`` also applies at creation only: ``"binary"`` stores sign-bit codes beside
    the vectors (1/16 of float16) and ``"hnsw"`` those codes plus a graph over pooled page
    vectors, ``"plaid"`` token centroids with 2-bit residual codes (docs/first-stages.md),
    and ``search`` then shortlists pages before scoring the shortlist exactly;
    ``None`` (default) scans every page exactly.
    ``text_tokenizer`` also applies at creation only: the FTS5 tokenizer of the pages' text
    store (``"unicode61"``, diacritics removed, by default; ``"trigram"`` for CJK or code-like
    text; ``None``: no text store).

    ``shared=True`` returns a :class:`~mmembed.index.shared.SharedIndex` handle on the one
    ``LocalIndex`` this process keeps for the folder (keyed by its real path): every
    component of an application (indexer, retriever, reranker, ...) can open the folder
    this way and write through the same writer lock. Each handle's ``close()`` only lets
    go of that handle; the index closes with the last one. A ``readonly=True`` shared
    handle refuses writes but shares the same index. Don't mix shared and unshared
    writers of one folder in one process: they conflict on the writer lock.
    """
    if shared:
        return open_shared(
            path,
            encoder,
            create=create,
            readonly=readonly,
            storage=storage,
            pooling=pooling,
            dtype=dtype,
            keep_thumbnails=keep_thumbnails,
            first_stage=first_stage,
            opener=LocalIndex,
            text_tokenizer=text_tokenizer,
        )
    return LocalIndex(
        path,
        encoder,
        create=create,
        readonly=readonly,
        storage=storage,
        pooling=pooling,
        dtype=dtype,
        keep_thumbnails=keep_thumbnails,
        first_stage=first_stage,
        text_tokenizer=text_tokenizer,
    )
