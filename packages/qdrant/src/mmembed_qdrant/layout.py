"""What every Qdrant engine shares: mmembed's pages laid out as Qdrant points.

Long because it is the whole :class:`~mmembed.index.IndexBackend` both engines share (writes,
reads, filters, search); the text side's work is in :mod:`.hybrid`, here only its entry points.

Layout: one point per page (point id = a UUID derived from mmembed's page id), payload =
mmembed's record. Multi-vector encoders store the page's vectors under the named vector
``multi`` (MaxSim, dot product, HNSW off: it is only ever scored exactly) plus their mean
under ``pooled`` (cosine, HNSW) for the prefetch stage; single-vector encoders store one
``dense`` vector. The encoder identity is stored with the points and checked on open like
the embedded index's manifest.

Filters keep the embedded index's exact semantics (type-strict comparisons, ISO dates as
points in time, ``$ne`` matching a missing key): Qdrant cannot express those natively, so
conditions on the record's own fields (``source``, ``content_hash``, ``id``, ``page``) narrow
the candidates inside the engine (payload indexes) and the full filter is then evaluated
client-side by the same compiler the embedded index uses, over the candidates' payloads.

:class:`QdrantPages` holds all of that; an engine (``qdrant-client`` in
:mod:`.backend`, the embedded ``qdrant-edge`` in :mod:`.edge`) supplies a few primitives.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qs

import torch

from mmembed.index import (
    DuplicatePageError,
    Filter,
    IndexClosedError,
    IndexFormatError,
    IndexReadOnlyError,
    PageInput,
)
from mmembed.index.filters import compile_filter
from mmembed.index.format import storage_dtype
from mmembed.index.fusion import search_options as mode_options
from mmembed.index.pages import encode_batch
from mmembed.index.plan import check_k, query_vectors
from mmembed.scoring import EmbeddingsLike
from mmembed.types import EncoderInfo, MMEmbedError, PageRecord, SearchHit

from .text import TEXT, document_vector

MULTI, POOLED, DENSE = "multi", "pooled", "dense"
FORMAT = 1
# Point ids must be UUIDs (or integers): derive one from mmembed's string id, stably.
ID_NAMESPACE = uuid.UUID("6f1c3c1e-5b7e-4d0a-9b53-6d6d656d6265")
RECORD_KEYS = ["id", "source", "page", "content_hash", "metadata", "n_vectors"]
INDEXED_KEYS: dict[str, Literal["keyword", "integer"]] = {
    "id": "keyword",
    "source": "keyword",
    "content_hash": "keyword",
    "page": "integer",
}
SCROLL_PAGE = 1024
_T = TypeVar("_T")
logger = logging.getLogger(__name__)

# A condition an engine evaluates natively: (operator, payload key, operand) with operator
# "eq" (operand: a value), "any" (a list of values), "range" (gt/gte/lt/lte -> bound) or
# "no_vector" (key: a vector name the point lacks; operand unused).
Condition = tuple[str, str, Any]
# A point to store: (point id, named vectors, payload).
Point = tuple[str, dict[str, Any], dict[str, Any]]


def point_id(page_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, page_id))


def identity(encoder: EncoderInfo, keep_thumbnails: bool) -> dict[str, Any]:
    """What a store records about itself, checked by :meth:`QdrantPages.check_identity`."""
    return {"format": FORMAT, "encoder": encoder.to_dict(), "keep_thumbnails": keep_thumbnails}


class QdrantPages:
    """mmembed's :class:`~mmembed.index.IndexBackend` over one Qdrant store of points.

    ``exact=True`` scores every (filtered) page with MaxSim; otherwise a search first takes
    the ``candidates`` best pages by their pooled vector (HNSW), then reranks them with
    MaxSim inside the engine — exact whenever ``candidates`` covers the pages. Subclasses
    open the store, set ``_encoder`` / ``keep_thumbnails`` and implement the primitives.
    """

    location: str
    readonly: bool
    exact: bool
    candidates: int
    keep_thumbnails: bool
    _encoder: EncoderInfo
    text_vector: bool = False
    """Whether the store has the ``text`` sparse vector (text and hybrid search, see
    :mod:`.hybrid`); stores created before it get it from ``--backfill-text``."""

    def __init__(self, *, location: str, readonly: bool, exact: bool, candidates: int) -> None:
        self.location = location
        self.readonly = readonly
        self.exact = exact
        self.candidates = candidates
        self._closed = False
        self._mutex = threading.RLock()

    # -- the engine's primitives ------------------------------------------------------------

    def _errors(self, action: str) -> AbstractContextManager[None]:
        """Translates the engine's exceptions into mmembed errors naming ``action``."""
        raise NotImplementedError

    def _put(self, points: list[Point]) -> None:
        """Store ``points`` in one request (replacing same ids), durable when it returns."""
        raise NotImplementedError

    def _fetch(self, pids: list[str], with_payload: Any, with_vectors: bool) -> list[Any]:
        """Stored points among ``pids`` (objects with ``.payload`` and ``.vector``)."""
        raise NotImplementedError

    def _scroll_page(self, where: list[Condition], with_payload: Any, offset: Any) -> tuple[list[Any], Any]:
        """Up to ``SCROLL_PAGE`` points matching all of ``where`` from ``offset`` on, and the
        next offset (``None`` at the end)."""
        raise NotImplementedError

    def _remove(self, pids: list[str]) -> None:
        raise NotImplementedError

    def _count_all(self) -> int:
        raise NotImplementedError

    def _query(self, rows: torch.Tensor, k: int, only: list[str] | None) -> list[Any]:
        """The ``k`` best points (with payload and score) for one query, among ``only``
        point ids when given; ``rows`` is (query_tokens, dim)."""
        raise NotImplementedError

    def _query_text(self, sparse: tuple[list[int], list[float]], k: int, only: list[str] | None) -> list[Any]:
        """The ``k`` best points (with payload and score) by the ``text`` sparse vector."""
        raise NotImplementedError

    def _query_hybrid(
        self,
        rows: torch.Tensor,
        sparse: tuple[list[int], list[float]],
        depth: int,
        only: list[str] | None,
        rrf_k: int | None,
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        """The visual and text sides ``depth`` deep (one batched request) and, given ``rrf_k``
        (the engine's constant), the engine's reciprocal rank fusion of exactly those two
        lists (prefetches restricted to each side's pages, rescored exactly), with records."""
        raise NotImplementedError

    def _sparse(self, vector: tuple[list[int], list[float]]) -> Any:
        """The engine's sparse vector object."""
        raise NotImplementedError

    def _add_text_vector(self) -> None:
        """Add the ``text`` sparse vector (IDF modifier) to a store created without it."""
        raise NotImplementedError

    def _set_text(self, items: list[tuple[str, str, Any]]) -> None:
        """Give the points ``(point id, text, sparse vector)`` their text payload, then their
        sparse vector (a kill between leaves text without vector, which the next
        ``--backfill-text`` completes)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free the engine's resources (the store stays on disk)."""

    # -- shared --------------------------------------------------------------------------------

    def _call(self, action: str, fn: Callable[[], _T]) -> _T:
        with self._errors(action):
            return fn()

    def check_identity(self, stored: Any, encoder: EncoderInfo | None) -> tuple[EncoderInfo, bool]:
        """The stored encoder and thumbnail setting, refusing a store mmembed did not make,
        another layout, or (with ``encoder``) another model's vectors."""
        if not isinstance(stored, dict) or "encoder" not in stored:
            raise IndexFormatError(
                f"the Qdrant store at {self.location} was not created by mmembed (it records no "
                "mmembed identity); pick another location, nothing was written."
            )
        if stored.get("format") != FORMAT:
            raise IndexFormatError(
                f"the Qdrant store at {self.location} has mmembed layout {stored.get('format')!r}; "
                f"this mmembed-qdrant reads layout {FORMAT}. Upgrade mmembed-qdrant or migrate the index."
            )
        info = EncoderInfo.from_dict(stored["encoder"])
        if encoder is not None:
            info.check_compatible(encoder, index_path=self.location)
        return info, bool(stored.get("keep_thumbnails", True))

    @property
    def encoder(self) -> EncoderInfo:
        return self._encoder

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r}, encoder={self._encoder.name!r})"

    def __enter__(self) -> QdrantPages:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the store (idempotent). A local store (Qdrant's local mode, a qdrant-edge
        folder) stays locked against other processes until its last handle in this process
        closes; a handle nobody closed is closed when it is garbage-collected."""
        if not self._closed:
            self._closed = True
            self._release()

    def __del__(self) -> None:
        # Like core's index handles: an adapter dropped without close() must not keep the folder
        # locked. Never waits on the shared-client lock from inside its own critical section.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._release_from_gc()

    def _release_from_gc(self) -> None:
        self._release()

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.location} is closed")

    def add(self, pages: Sequence[PageInput]) -> list[str]:
        """Store ``pages`` as one batch (validated in full first); an id already stored is an error."""
        return self._write(pages, replace=False)

    def upsert(self, pages: Sequence[PageInput]) -> list[str]:
        """Store ``pages`` as one batch, replacing stored pages with the same ids."""
        return self._write(pages, replace=True)

    def _writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise IndexReadOnlyError(f"the index at {self.location} was opened read-only")

    def _write(self, pages: Sequence[PageInput], *, replace: bool) -> list[str]:
        self._writable()
        batch = encode_batch(
            pages,
            encoder=self._encoder,
            dtype=storage_dtype("float32"),
            keep_thumbnails=self.keep_thumbnails,
            index_path=cast(Path, self.location),  # only formatted into error messages
        )
        if not batch.rows:
            return []
        if not self.text_vector and any(row.text is not None for row in batch.rows):
            logger.warning(
                "the Qdrant index at %s has no 'text' vector (created before text search): the page "
                "text is kept in the payload but not searchable until `mmembed index --backfill-text "
                "--index URI` adds it.",
                self.location,
            )
        points: list[Point] = []
        offset = 0
        for row in batch.rows:
            rows = torch.from_numpy(batch.vectors[offset : offset + row.n_vectors])  # (n_vectors, dim)
            offset += row.n_vectors
            payload: dict[str, Any] = {
                "id": row.id,
                "source": row.source,
                "page": row.page,
                "content_hash": row.content_hash,
                "metadata": json.loads(row.metadata_json),
                "n_vectors": row.n_vectors,
            }
            if row.thumbnail is not None:
                payload["thumbnail"] = base64.b64encode(row.thumbnail).decode("ascii")
            vectors = self._vectors(rows)
            if row.text is not None:
                payload["text"] = row.text
                sparse = document_vector(row.text) if self.text_vector else None
                if sparse is not None:  # in the same point, so the same upsert: both or neither
                    vectors[TEXT] = self._sparse(sparse)
            points.append((point_id(row.id), vectors, payload))
        with self._mutex:
            if not replace:
                present = self._present(batch.ids)
                if present:
                    raise DuplicatePageError(
                        f"the index at {self.location} already holds {len(present)} of these pages "
                        f"(e.g. id {present[0]!r}); nothing was written. Use upsert() to replace them."
                    )
            self._call("store pages", lambda: self._put(points))
        return batch.ids

    def _vectors(self, rows: torch.Tensor) -> dict[str, Any]:
        # rows: (n_vectors, dim)
        if rows.shape[0] == 0:
            return {}  # stored, filterable, never a search result
        if self._encoder.kind == "single":
            return {DENSE: rows[0].tolist()}
        return {MULTI: rows.tolist(), POOLED: rows.mean(dim=0).tolist()}

    def _present(self, ids: Sequence[str]) -> list[str]:
        found = self._retrieve(ids, with_payload=["id"])
        return [str((p.payload or {})["id"]) for p in found]

    def _retrieve(
        self, ids: Sequence[str], *, with_payload: Any = True, with_vectors: bool = False
    ) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(ids), SCROLL_PAGE):
            chunk = [point_id(i) for i in ids[start : start + SCROLL_PAGE]]
            out.extend(
                self._call(
                    "read pages",
                    lambda chunk=chunk: self._fetch(chunk, with_payload, with_vectors),  # type: ignore[misc]
                )
            )
        return out

    def _scroll(self, where: list[Condition], with_payload: Any) -> Iterator[Any]:
        offset: Any = None
        while True:
            points, offset = self._call(
                "read pages",
                lambda offset=offset: self._scroll_page(where, with_payload, offset),  # type: ignore[misc]
            )
            yield from points
            if offset is None:
                return

    def _matching(self, where: Filter | None) -> list[str] | None:
        """Ids of the pages matching ``where``; ``None`` when it matches every page."""
        sql, params = compile_filter(where)  # validates: an invalid filter fails before any read
        if where is None or sql == "1":
            return None
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(
                "CREATE TABLE pages (id TEXT, source TEXT, page INTEGER, content_hash TEXT, metadata TEXT)"
            )
            rows = (
                (p["id"], p["source"], p["page"], p["content_hash"], json.dumps(p["metadata"]))
                for p in (point.payload or {} for point in self._scroll(native_prefilter(where), RECORD_KEYS))
            )
            conn.executemany("INSERT INTO pages VALUES (?, ?, ?, ?, ?)", rows)
            return [r[0] for r in conn.execute(f"SELECT id FROM pages WHERE {sql}", params)]
        finally:
            conn.close()

    def delete(self, ids: Sequence[str] | None = None, *, where: Filter | None = None) -> int:
        """Delete pages whose id is in ``ids`` and (if given) that match ``where``; returns how
        many were deleted. ``where={}`` matches every page."""
        self._writable()
        if ids is None and where is None:
            raise MMEmbedError("delete() needs ids and/or where; to delete every page pass where={}.")
        if isinstance(ids, str):
            raise MMEmbedError(f"delete() takes a list of ids, got the string {ids!r}; wrap it in a list.")
        with self._mutex:
            matching = self._matching(where)
            if ids is not None:
                targets = self._present(list(ids))
                if matching is not None:
                    keep = set(matching)
                    targets = [i for i in targets if i in keep]
            elif matching is None:
                targets = [str((p.payload or {})["id"]) for p in self._scroll([], ["id"])]
            else:
                targets = matching
            if targets:
                self._call("delete pages", lambda: self._remove([point_id(i) for i in targets]))
            return len(targets)

    def count(self, where: Filter | None = None) -> int:
        self._check_open()
        matching = self._matching(where)
        if matching is not None:
            return len(matching)
        return self._call("count pages", self._count_all)

    def get(self, ids: Sequence[str]) -> list[PageRecord | None]:
        self._check_open()
        by_id = {r.id: r for r in map(_record, self._retrieve(list(ids)))}
        return [by_id.get(i) for i in ids]

    def get_embeddings(self, ids: Sequence[str]) -> list[torch.Tensor | None]:
        self._check_open()
        found: dict[str, torch.Tensor] = {}
        for p in self._retrieve(list(ids), with_payload=["id"], with_vectors=True):
            vectors = p.vector or {}
            if self._encoder.kind == "single":
                rows = [vectors[DENSE]] if DENSE in vectors else []
            else:
                rows = vectors.get(MULTI, [])
            found[str(p.payload["id"])] = torch.tensor(rows, dtype=torch.float32).reshape(
                -1, self._encoder.dim
            )  # (n_vectors, dim)
        return [found.get(i) for i in ids]

    def records(self, where: Filter | None = None) -> Iterator[PageRecord]:
        self._check_open()
        matching = self._matching(where)
        if matching is None:
            yield from map(_record, self._scroll([], True))
        else:
            yield from map(_record, self._retrieve(matching))

    def sources(self) -> dict[str, str]:
        self._check_open()
        return {
            str(p.payload["source"]): str(p.payload["content_hash"])
            for p in self._scroll([], ["source", "content_hash"])
        }

    def search(
        self,
        queries: EmbeddingsLike | None,
        k: int = 10,
        where: Filter | None = None,
        *,
        mode: str = "visual",
        texts: Sequence[str] | str | None = None,
        alpha: float | None = None,
        rrf_k: int | None = None,
    ) -> list[list[SearchHit]]:
        """Top-``k`` pages for each query, best first, among pages matching ``where`` (a
        pre-filter). Exact MaxSim with ``exact=True`` or while ``candidates`` covers the
        matching pages; beyond that, MaxSim over the pooled-vector prefetch.

        ``mode="text"`` ranks pages by their text (the ``text`` sparse vector, BM25 with the
        engine's IDF) for ``texts``; ``mode="hybrid"`` fuses both sides, by the engine's
        reciprocal rank fusion (``rrf_k``) or, given ``alpha``, by core's weighted sum
        (:mod:`.hybrid`). Their hits say which side(s) found them."""
        self._check_open()
        check_k(k)  # the embedded index's search plan: same checks, same errors
        options = mode_options(mode, alpha, rrf_k)
        if options.mode != "visual":
            from .hybrid import search_modes

            return search_modes(self, options, k, queries, texts, where)
        if queries is None:
            raise MMEmbedError("search() needs query embeddings (only mode='text' searches with texts alone)")
        q = query_vectors(queries, self._encoder, self.location)
        values = q.values  # (total_query_rows, dim) float32
        offsets = q.offsets.tolist()
        n_queries = len(offsets) - 1
        matching = self._matching(where)
        if k == 0 or (matching is not None and not matching):
            return [[] for _ in range(n_queries)]
        only = None if matching is None else [point_id(i) for i in matching]
        hits: list[list[SearchHit]] = []
        for i in range(n_queries):
            rows = values[offsets[i] : offsets[i + 1]]  # (query_tokens, dim)
            found = self._call("search", lambda rows=rows: self._query(rows, k, only))  # type: ignore[misc]
            hits.append([SearchHit(str((p.payload or {})["id"]), float(p.score), _record(p)) for p in found])
        return hits

    # -- text (issue 25): search_text / get_texts like the embedded index's; the rest is
    # mmembed.text_backfill's protocol (`mmembed index --backfill-text`)

    def search_text(
        self, texts: Sequence[str] | str, k: int = 10, where: Filter | None = None
    ) -> list[list[SearchHit]]:
        """Top-``k`` pages by their own text for each query string, among pages matching ``where``."""
        return self.search(None, k, where, mode="text", texts=texts)

    def get_texts(self, ids: Sequence[str]) -> list[str | None]:
        """The stored page text of ``ids`` in order (``None``: unknown id, or a page without text)."""
        from .hybrid import get_texts

        self._check_open()
        return get_texts(self, ids)

    def prepare_text_store(self, tokenizer: str | None = None) -> dict[str, bool]:
        from .hybrid import prepare_text_store

        return prepare_text_store(self, tokenizer)

    def pages_without_text(self) -> list[tuple[str, str, int, str]]:
        from .hybrid import pages_without_text

        self._check_open()
        return pages_without_text(self)

    def store_texts(self, texts: Sequence[tuple[str, str]]) -> int:
        from .hybrid import store_texts

        return store_texts(self, texts)

    def info(self) -> dict[str, Any]:
        enc = self._encoder
        return {
            "location": self.location,
            "pages": self.count(),
            "model": enc.name,
            "revision": enc.revision,
            "family": enc.family,
            "kind": enc.kind,
            "similarity": enc.similarity,
            "dim": enc.dim,
            "keep_thumbnails": self.keep_thumbnails,
            "sources": len(self.sources()),
            "storage": "float32",  # the collection's vectors: Qdrant's default datatype, no quantisation
            "first_stage": self.search_plan(),
            **self._text_info(),
        }

    def _text_info(self) -> dict[str, Any]:
        if not self.text_vector:
            return {"text_tokenizer": None, "pages_with_text": 0}
        with_text = sum(1 for _ in self._scroll([("has_vector", TEXT, None)], ["id"]))
        return {"text_tokenizer": "unicode61", "pages_with_text": with_text}

    def search_plan(self) -> str:
        """How a search runs, as ``mmembed info`` shows it."""
        if self._encoder.kind == "single":
            return "qdrant vector index (HNSW; exact below its full-scan threshold)"
        if self.exact:
            return "none (exact MaxSim over every page: exact=true)"
        return (
            f"pooled-vector prefetch of {self.candidates} candidates (HNSW), then exact MaxSim "
            "(exact whenever the candidates cover the pages)"
        )


def _record(point: Any) -> PageRecord:
    p = point.payload or {}
    thumb = p.get("thumbnail")
    return PageRecord(
        id=str(p["id"]),
        source=str(p["source"]),
        page=int(p["page"]),
        content_hash=str(p["content_hash"]),
        metadata=dict(p.get("metadata") or {}),
        thumbnail=base64.b64decode(thumb) if isinstance(thumb, str) else None,
        n_vectors=int(p.get("n_vectors", 0)),
    )


def search_options(query: str, uri: str) -> dict[str, Any]:
    """The search options a URI's query string sets: ``exact=true``, ``candidates=N``."""
    options: dict[str, Any] = {}
    for key, values in parse_qs(query).items():
        if key == "exact":
            options["exact"] = values[-1].lower() in ("1", "true", "yes")
        elif key == "candidates" and values[-1].isdigit():
            options["candidates"] = int(values[-1])
        else:
            raise MMEmbedError(
                f"unknown option {key!r} in the URI {uri!r}; use exact=true or candidates=N "
                "(a Qdrant API key goes in QDRANT_API_KEY, not the URI)"
            )
    return options


def native_prefilter(where: Filter) -> list[Condition]:
    """Conditions implied by ``where``'s top-level conditions on the record's own fields
    (typed, indexed): a superset of the matches, so the client-side pass stays exact."""
    must: list[Condition] = []
    for key, cond in where.items():
        if key not in INDEXED_KEYS:
            continue
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        if "$eq" in ops:
            must.append(("eq", key, ops["$eq"]))
        if ops.get("$in"):
            must.append(("any", key, list(ops["$in"])))
        if key == "page":
            bounds = {op[1:]: ops[op] for op in ("$gt", "$gte", "$lt", "$lte") if op in ops}
            if bounds:
                must.append(("range", key, bounds))
    return must
