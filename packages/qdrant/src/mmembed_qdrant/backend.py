"""mmembed's :class:`~mmembed.index.IndexBackend` over a Qdrant collection, through
``qdrant-client``: a server, a cluster or Qdrant's local mode.

The layout, filters and search are :mod:`.layout`'s; here the collection's metadata holds
the encoder identity, and each primitive is one ``qdrant-client`` request.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

import torch
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from mmembed.index import IndexNotFoundError
from mmembed.index.local import _check_encoder
from mmembed.types import EncoderInfo

from .clients import Release
from .errors import translate_errors
from .layout import (
    DENSE,
    INDEXED_KEYS,
    MULTI,
    POOLED,
    SCROLL_PAGE,
    Condition,
    Point,
    QdrantPages,
    identity,
    point_id,
)
from .text import TEXT

__all__ = ["QdrantIndex", "point_id", "to_filter"]


class QdrantIndex(QdrantPages):
    """Pages of one encoder in one Qdrant collection (server, cluster or local mode).

    Open it with :func:`mmembed_qdrant.open_qdrant_index` (a ``qdrant://`` URI) or
    :meth:`connect`. ``exact=True`` scores every (filtered) page with MaxSim; otherwise a
    search first takes the ``candidates`` best pages by their pooled vector (HNSW), then
    reranks them with MaxSim inside Qdrant — exact whenever ``candidates`` covers the pages.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        encoder: EncoderInfo | None = None,
        *,
        location: str,
        create: bool = True,
        readonly: bool = False,
        keep_thumbnails: bool = True,
        exact: bool = False,
        candidates: int = 1000,
        collection_options: dict[str, Any] | None = None,
        release: Release | None = None,
    ) -> None:
        super().__init__(location=location, readonly=readonly, exact=exact, candidates=candidates)
        self._client = client
        self.collection = collection
        self._release_client = release
        try:
            self._encoder, self.keep_thumbnails = self._open(
                encoder, create=create, keep_thumbnails=keep_thumbnails, options=collection_options or {}
            )
        except BaseException:
            self.close()
            raise

    @classmethod
    def connect(
        cls,
        collection: str,
        encoder: EncoderInfo | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | os.PathLike[str] | None = None,
        timeout: int = 10,
        **options: Any,
    ) -> QdrantIndex:
        """Open (or create) ``collection`` on the server at ``url``, in the local store at
        ``path`` or, with neither, in memory. ``options`` are the constructor's."""
        from .clients import acquire_client

        must_exist = options.get("readonly", False) or not options.get("create", True)
        client, location, release = acquire_client(
            url=url, api_key=api_key, path=path, timeout=timeout, must_exist=must_exist
        )
        return cls(
            client, collection, encoder, location=f"{location}/{collection}", release=release, **options
        )

    def _open(
        self, encoder: EncoderInfo | None, *, create: bool, keep_thumbnails: bool, options: dict[str, Any]
    ) -> tuple[EncoderInfo, bool]:
        name = self.collection
        if not self._call("look up the collection", lambda: self._client.collection_exists(name)):
            if encoder is None or not create or self.readonly:
                raise IndexNotFoundError(
                    f"no mmembed index at {self.location}: the Qdrant collection {name!r} does not exist. "
                    "Index documents into it first (mmembed index ... --index URI) or check the name."
                )
            _check_encoder(encoder)
            self._create(encoder, keep_thumbnails, options)
            self.text_vector = True
            return encoder, keep_thumbnails
        config = self._call("read the collection", lambda: self._client.get_collection(name)).config
        found = self.check_identity((config.metadata or {}).get("mmembed"), encoder)
        self.text_vector = TEXT in (config.params.sparse_vectors or {})
        return found

    def _create(self, encoder: EncoderInfo, keep_thumbnails: bool, options: dict[str, Any]) -> None:
        if encoder.kind == "multi":
            vectors = {
                MULTI: qm.VectorParams(
                    size=encoder.dim,
                    distance=qm.Distance.DOT,  # MaxSim = sum over query rows of the best dot product
                    multivector_config=qm.MultiVectorConfig(comparator=qm.MultiVectorComparator.MAX_SIM),
                    hnsw_config=qm.HnswConfigDiff(m=0),  # only rescored, never graph-searched
                ),
                POOLED: qm.VectorParams(size=encoder.dim, distance=qm.Distance.COSINE),
            }
        else:
            distance = qm.Distance.COSINE if encoder.similarity == "cosine" else qm.Distance.DOT
            vectors = {DENSE: qm.VectorParams(size=encoder.dim, distance=distance)}
        metadata = {"mmembed": identity(encoder, keep_thumbnails)}
        self._call(
            "create the collection",
            lambda: self._client.create_collection(
                self.collection,
                vectors_config=vectors,
                # The pages' text (hybrid search): BM25 weights per page, the engine's IDF per query.
                sparse_vectors_config={TEXT: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                metadata=metadata,
                **options,
            ),
        )
        if not self.location.startswith(("http://", "https://")):
            # Qdrant's local mode (a folder, or in memory) ignores payload indexes and warns on
            # each one: a server copy (`mmembed migrate`) creates them.
            return
        schemas = {"keyword": qm.PayloadSchemaType.KEYWORD, "integer": qm.PayloadSchemaType.INTEGER}
        for key, kind in INDEXED_KEYS.items():
            self._call(
                "index the payload",
                lambda key=key, kind=kind: self._client.create_payload_index(  # type: ignore[misc]
                    self.collection, key, field_schema=schemas[kind]
                ),
            )

    # -- the engine's primitives ------------------------------------------------------------

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return translate_errors(action, self.location)

    def _release(self) -> None:
        if self._release_client is not None:
            self._release_client()

    def _release_from_gc(self) -> None:
        if self._release_client is not None:
            self._release_client(from_gc=True)

    def _put(self, points: list[Point]) -> None:
        structs = [
            qm.PointStruct(id=pid, vector=vectors, payload=payload) for pid, vectors, payload in points
        ]
        self._client.upsert(self.collection, points=structs, wait=True)

    def _fetch(self, pids: list[str], with_payload: Any, with_vectors: bool) -> list[Any]:
        return self._client.retrieve(
            self.collection, pids, with_payload=with_payload, with_vectors=with_vectors
        )

    def _scroll_page(self, where: list[Condition], with_payload: Any, offset: Any) -> tuple[list[Any], Any]:
        return self._client.scroll(
            self.collection,
            scroll_filter=to_filter(where),
            limit=SCROLL_PAGE,
            offset=offset,
            with_payload=with_payload,
            with_vectors=False,
        )

    def _remove(self, pids: list[str]) -> None:
        self._client.delete(self.collection, points_selector=qm.PointIdsList(points=list(pids)), wait=True)

    def _count_all(self) -> int:
        return int(self._client.count(self.collection, exact=True).count)

    def _visual(self, rows: torch.Tensor, limit: int, flt: qm.Filter | None) -> dict[str, Any]:
        """The visual side's query fields (for ``query_points``, a request or a prefetch)."""
        # rows: (query_tokens, dim)
        if self._encoder.kind == "single":
            return {"query": rows[0].tolist(), "using": DENSE}
        if self.exact:
            return {"query": rows.tolist(), "using": MULTI, "params": qm.SearchParams(exact=True)}
        pooled = qm.Prefetch(
            query=rows.mean(dim=0).tolist(), using=POOLED, filter=flt, limit=max(self.candidates, limit)
        )
        return {"query": rows.tolist(), "using": MULTI, "prefetch": pooled}

    def _query(self, rows: torch.Tensor, k: int, only: list[str] | None) -> list[Any]:
        # rows: (query_tokens, dim)
        flt = _only(only)
        visual = self._visual(rows, k, flt)
        if "params" in visual:
            visual["search_params"] = visual.pop("params")
        return self._client.query_points(
            self.collection, limit=k, with_payload=_RECORD, query_filter=flt, **visual
        ).points

    def _sparse(self, vector: tuple[list[int], list[float]]) -> qm.SparseVector:
        return qm.SparseVector(indices=vector[0], values=vector[1])

    def _query_text(self, sparse: tuple[list[int], list[float]], k: int, only: list[str] | None) -> list[Any]:
        return self._client.query_points(
            self.collection,
            query=self._sparse(sparse),
            using=TEXT,
            limit=k,
            with_payload=_RECORD,
            query_filter=_only(only),
        ).points

    def _query_hybrid(
        self,
        rows: torch.Tensor,
        sparse: tuple[list[int], list[float]],
        depth: int,
        only: list[str] | None,
        rrf_k: int | None,
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        # rows: (query_tokens, dim)
        flt = _only(only)
        text_query: dict[str, Any] = {"query": self._sparse(sparse), "using": TEXT}
        sides = [self._visual(rows, depth, flt), text_query]
        # alpha builds its hits from the side lists (records); RRF from the fusion's (ids suffice)
        side_payload: Any = ["id"] if rrf_k is not None else _RECORD
        requests = [qm.QueryRequest(**s, filter=flt, limit=depth, with_payload=side_payload) for s in sides]
        visual, text = (r.points for r in self._client.query_batch_points(self.collection, requests))
        if rrf_k is None:
            return visual, text, None
        # The engine's fusion over the two lists just found: each prefetch rescores exactly its
        # own side's pages (the same scores, so the same ranks), a few dozen points, not a second search.
        exact = qm.SearchParams(exact=True)
        rescore: dict[str, Any] = {"query": rows[0].tolist(), "using": DENSE, "params": exact}
        if self._encoder.kind == "multi":
            rescore = {"query": rows.tolist(), "using": MULTI, "params": exact}
        prefetch = [
            qm.Prefetch(**q, filter=_only([p.id for p in found]), limit=len(found))
            for q, found in ((rescore, visual), (text_query, text))
            if found
        ]
        if not prefetch:
            return visual, text, []
        fused = self._client.query_points(
            self.collection,
            prefetch=prefetch,
            query=qm.RrfQuery(rrf=qm.Rrf(k=rrf_k)),
            limit=depth,
            with_payload=_RECORD,
        ).points
        return visual, text, fused

    def _add_text_vector(self) -> None:
        self._client.create_vector_name(
            self.collection,
            TEXT,
            qm.SparseVectorNameConfig(sparse=qm.SparseVectorConfig(modifier=qm.Modifier.IDF)),
        )

    def _set_text(self, items: list[tuple[str, str, Any]]) -> None:
        operations: list[Any] = [
            qm.SetPayloadOperation(set_payload=qm.SetPayload(payload={"text": text}, points=[pid]))
            for pid, text, _ in items
        ]
        vectors = [qm.PointVectors(id=pid, vector={TEXT: v}) for pid, _, v in items if v is not None]
        if vectors:
            operations.append(qm.UpdateVectorsOperation(update_vectors=qm.UpdateVectors(points=vectors)))
        self._client.batch_update_points(self.collection, operations, wait=True)


_RECORD = qm.PayloadSelectorExclude(exclude=[TEXT])
"""A hit's payload: the record without the page text (not part of a hit, possibly long)."""


def _only(only: list[Any] | None) -> qm.Filter | None:
    return None if only is None else qm.Filter(must=[qm.HasIdCondition(has_id=list(only))])


def to_filter(where: list[Condition]) -> qm.Filter | None:
    """``qdrant-client``'s filter for :func:`~.layout.native_prefilter`'s conditions."""
    must: list[qm.Condition] = []
    must_not: list[qm.Condition] = []
    for op, key, operand in where:
        if op == "no_vector":
            must_not.append(qm.HasVectorCondition(has_vector=key))
        elif op == "has_vector":
            must.append(qm.HasVectorCondition(has_vector=key))
        elif op == "eq":
            must.append(qm.FieldCondition(key=key, match=qm.MatchValue(value=operand)))
        elif op == "any":
            must.append(qm.FieldCondition(key=key, match=qm.MatchAny(any=operand)))
        else:
            must.append(qm.FieldCondition(key=key, range=qm.Range(**operand)))
    return qm.Filter(must=must or None, must_not=must_not or None) if must or must_not else None
