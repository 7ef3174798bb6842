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
            return encoder, keep_thumbnails
        config = self._call("read the collection", lambda: self._client.get_collection(name)).config
        return self.check_identity((config.metadata or {}).get("mmembed"), encoder)

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
                self.collection, vectors_config=vectors, metadata=metadata, **options
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

    def _query(self, rows: torch.Tensor, k: int, only: list[str] | None) -> list[Any]:
        # rows: (query_tokens, dim)
        flt = None if only is None else qm.Filter(must=[qm.HasIdCondition(has_id=list(only))])
        kwargs: dict[str, Any] = {"limit": k, "with_payload": True, "query_filter": flt}
        if self._encoder.kind == "single":
            kwargs.update(query=rows[0].tolist(), using=DENSE)
        elif self.exact:
            kwargs.update(query=rows.tolist(), using=MULTI, search_params=qm.SearchParams(exact=True))
        else:
            kwargs.update(
                query=rows.tolist(),
                using=MULTI,
                prefetch=qm.Prefetch(
                    query=rows.mean(dim=0).tolist(),
                    using=POOLED,
                    filter=flt,
                    limit=max(self.candidates, k),
                ),
            )
        return self._client.query_points(self.collection, **kwargs).points


def to_filter(where: list[Condition]) -> qm.Filter | None:
    """``qdrant-client``'s filter for :func:`~.layout.native_prefilter`'s conditions."""
    must: list[qm.Condition] = []
    for op, key, operand in where:
        if op == "eq":
            must.append(qm.FieldCondition(key=key, match=qm.MatchValue(value=operand)))
        elif op == "any":
            must.append(qm.FieldCondition(key=key, match=qm.MatchAny(any=operand)))
        else:
            must.append(qm.FieldCondition(key=key, range=qm.Range(**operand)))
    return qm.Filter(must=must) if must else None
