"""mmembed's :class:`~mmembed.index.IndexBackend` on Qdrant's embedded engine, qdrant-edge.

Long because the folder checks (manifest, shard configuration, committed page count,
lock, read-only copy) come before the engine reads anything, and each is short.

qdrant-edge (PyPI ``qdrant-edge-py``) runs Qdrant's storage and search in this process —
no server, no pickle: segments, payload indexes, a write-ahead log. The points are laid
out exactly as in a Qdrant collection (:mod:`.layout`), so an index moves to a server
with ``mmembed migrate`` and searches the same. A folder holds::

    mmembed.json        the encoder identity (written last: a folder without it is not an index)
    shard/              the edge shard (segments + WAL)
    mmembed-edge.lock   flock held by the process that has the shard open (its pid inside)
    mmembed-state.json  how many pages mmembed committed (a range while a write is under way)

Opening checks the folder before the engine reads it: no link anywhere in it (the engine
writes by path), the shard's vector configuration matches the manifest's encoder, and the
engine's page count lies in the committed range (a lost segment folder is an error, not
silently fewer pages).

Each batch is one update operation, one WAL record: a process killed mid-batch leaves the
batch in whole or not at all. One process opens a folder at a time — our lock is taken
before the engine reads anything (the engine locks only its WAL, after loading segments),
and the kernel drops it when its holder dies; indexes opened on the same folder in one
process share the shard.

URI: ``qdrant-edge:///absolute/folder`` or ``qdrant-edge://relative/folder``, with the
``qdrant://`` options ``?exact=true`` / ``?candidates=N``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmembed.index import (
    IndexDamagedError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
    safe_files,
)
from mmembed.index.format import write_json_atomic
from mmembed.index.local import _check_encoder
from mmembed.index.lock import WriterLock
from mmembed.types import EncoderInfo, MMEmbedError

from .clients import Release, acquire_shared
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
    search_options,
)
from .text import TEXT

if TYPE_CHECKING:
    import qdrant_edge as qe

SCHEME = "qdrant-edge"
MANIFEST = "mmembed.json"
SHARD = "shard"
LOCK = "mmembed-edge.lock"
STATE = "mmembed-state.json"
INSTALL_HINT = "pip install 'mmembed-qdrant[edge]'"


def _edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:
        raise MMEmbedError(f"the qdrant-edge backend needs qdrant-edge-py ({exc}); {INSTALL_HINT}") from exc
    return qdrant_edge


class QdrantEdgeIndex(QdrantPages):
    """Pages of one encoder in a qdrant-edge shard under ``path`` (created when missing,
    given ``encoder``). Search options as :class:`~mmembed_qdrant.QdrantIndex`'s."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder: EncoderInfo | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        keep_thumbnails: bool = True,
        exact: bool = False,
        candidates: int = 1000,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        super().__init__(
            location=f"{SCHEME}://{self.path}", readonly=readonly, exact=exact, candidates=candidates
        )
        self._qe = _edge()
        self._shard: qe.EdgeShard | None = None
        self._release_shard: Release = _nothing_to_release
        try:
            self._encoder, self.keep_thumbnails = self._open(encoder, create, keep_thumbnails)
        except BaseException:
            self.close()
            raise

    def _open(
        self, encoder: EncoderInfo | None, create: bool, keep_thumbnails: bool
    ) -> tuple[EncoderInfo, bool]:
        if self.path.exists() and not self.path.is_dir():
            raise IndexFormatError(
                f"{self.path} is a file, not a qdrant-edge index folder; nothing was written."
            )
        may_create = encoder is not None and create and not self.readonly
        entries = set(os.listdir(self.path)) if self.path.exists() else set()
        if MANIFEST in entries:
            # The manifest never changes once written: check it before taking the folder.
            stored = self._read_manifest()
            self.check_identity(stored, encoder)
        elif not entries - {LOCK}:
            if not may_create:
                raise IndexNotFoundError(
                    f"no mmembed index at {self.location}: the folder is missing or empty. Index documents "
                    "into it first (mmembed index ... --index URI) or check the path."
                )
            assert encoder is not None
            _check_encoder(encoder)
        elif LOCK not in entries:
            raise IndexFormatError(
                f"{self.path} is not an mmembed qdrant-edge index (it has no {MANIFEST}); pick an empty "
                "or new folder. Nothing was written."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        (self._shard, _), self._release_shard = acquire_shared(
            f"{SCHEME}:{self.path}",
            lambda: self._take(encoder if may_create else None, keep_thumbnails),
            _close_handle,
        )
        # Another process may have created it between the check above and the lock.
        found = self.check_identity(self._read_manifest(), encoder)
        self.text_vector = TEXT in self._sparse_config()
        return found

    def _sparse_config(self) -> dict[str, Any]:
        """The shard's sparse vectors (``shard/edge_config.json``; checked readable on open)."""
        rel = f"{SHARD}/edge_config.json"
        try:
            with safe_files.opened(self.path, rel) as fd, open(fd, "rb", closefd=False) as fh:
                sparse = json.loads(fh.read().decode("utf-8")).get("sparse_vectors") or {}
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
            raise self._damaged(f"{rel} is unreadable ({exc})") from exc
        return sparse if isinstance(sparse, dict) else {}

    def _read_manifest(self) -> Any:
        manifest = self.path / MANIFEST
        try:
            with safe_files.opened(self.path, MANIFEST) as fd, open(fd, "rb", closefd=False) as fh:
                return json.loads(fh.read().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFormatError(
                f"the qdrant-edge index at {self.path} is damaged: {manifest} is unreadable ({exc}). "
                "Restore it from a backup or re-index; nothing was written."
            ) from exc

    def _take(self, create_for: EncoderInfo | None, keep_thumbnails: bool) -> tuple[Any, WriterLock]:
        """The folder's lock, then its shard (created when the folder has none yet): the
        engine locks only its WAL, so without ours a second process's load attempt would
        read (or tidy) segments the holder is writing."""
        if self.readonly and (self.path / MANIFEST).is_file() and not os.access(self.path, os.W_OK):
            return self._take_private_copy()
        lock = WriterLock(self.path / LOCK, self.path)
        try:
            lock.acquire()
        except IndexLockedError as exc:
            raise IndexLockedError(
                f"the qdrant-edge index at {self.location} is open in another process (its pid is in "
                f"{self.path / LOCK}); the embedded engine allows one process per folder — close it "
                "there, or use a Qdrant server for concurrent writers."
            ) from exc
        try:
            with self._errors("open the index"):
                if (self.path / MANIFEST).is_file():
                    if not (self.path / SHARD).is_dir():
                        raise IndexFormatError(
                            f"the qdrant-edge index at {self.path} is damaged: its {SHARD}/ folder is missing. "
                            "Restore it from a backup or re-index; nothing was written."
                        )
                    # The engine writes inside the shard by path: no link may lead it outside.
                    safe_files.check_tree(self.path, SHARD)
                    self._check_shard_config()
                    shard = self._qe.EdgeShard.load(str(self.path / SHARD))
                    try:
                        self._check_committed(shard)
                    except BaseException:
                        shard.close()
                        raise
                    return shard, lock
                if set(os.listdir(self.path)) - {LOCK}:
                    raise IndexFormatError(
                        f"{self.path} holds an interrupted qdrant-edge index creation (no {MANIFEST}): "
                        "delete the folder and index again. Nothing was written."
                    )
                if create_for is None:
                    raise IndexNotFoundError(f"no mmembed index at {self.location}: the folder is empty.")
                return self._create(create_for, keep_thumbnails), lock
        except BaseException:
            lock.release()
            raise

    def _take_private_copy(self) -> tuple[Any, Any]:
        """A read-only folder (a mounted snapshot): the engine rewrites files of the shard it
        loads, so it loads a private copy in a temporary folder; the folder is never written."""
        safe_files.check_tree(self.path, SHARD)
        self._check_shard_config()
        temp = tempfile.mkdtemp(prefix="mmembed-edge-")
        copy = _PrivateCopy(temp)
        try:
            with self._errors("open the index"):
                shutil.copytree(self.path / SHARD, Path(temp) / SHARD)
                shard = self._qe.EdgeShard.load(str(Path(temp) / SHARD))
                try:
                    self._check_committed(shard)
                except BaseException:
                    shard.close()
                    raise
        except BaseException:
            copy.release()
            raise
        return shard, copy

    def _create(self, encoder: EncoderInfo, keep_thumbnails: bool) -> Any:
        qe = self._qe
        if encoder.kind == "multi":
            vectors = {
                MULTI: qe.EdgeVectorParams(
                    size=encoder.dim,
                    distance=qe.Distance.Dot,  # MaxSim = sum over query rows of the best dot product
                    multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
                    # only rescored, never graph-searched
                    hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
                ),
                POOLED: qe.EdgeVectorParams(size=encoder.dim, distance=qe.Distance.Cosine),
            }
        else:
            distance = qe.Distance.Cosine if encoder.similarity == "cosine" else qe.Distance.Dot
            vectors = {DENSE: qe.EdgeVectorParams(size=encoder.dim, distance=distance)}
        # The pages' text (hybrid search): BM25 weights per page, the engine's IDF per query.
        sparse = {TEXT: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
        shard = qe.EdgeShard.create(
            str(self.path / SHARD), qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse)
        )
        try:
            schemas = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
            for key, kind in INDEXED_KEYS.items():
                shard.update(qe.UpdateOperation.create_field_index(key, schemas[kind]))
            shard.flush()
            # The manifest last, atomically: a folder holding it always holds a whole shard.
            tmp = f".{MANIFEST}.tmp"
            with open(safe_files.create_new(self.path, tmp), "w", encoding="utf-8") as out:
                json.dump(identity(encoder, keep_thumbnails), out)
                out.flush()
                os.fsync(out.fileno())
            safe_files.rename(self.path, tmp, MANIFEST)
        except BaseException:
            shard.close()
            raise
        return shard

    def _damaged(self, what: str) -> IndexDamagedError:
        return IndexDamagedError(
            f"the qdrant-edge index at {self.path} is damaged: {what}. Nothing was written. Restore "
            "the folder from a backup or re-index into a new folder."
        )

    def _check_shard_config(self) -> None:
        """The shard's vectors (``shard/edge_config.json``) must be the ones the manifest's encoder
        makes: an edited ``mmembed.json`` (dim, kind) is refused before anything reads or writes."""
        encoder = EncoderInfo.from_dict(self._read_manifest()["encoder"])
        rel = f"{SHARD}/edge_config.json"
        try:
            with safe_files.opened(self.path, rel) as fd, open(fd, "rb", closefd=False) as fh:
                vectors = json.loads(fh.read().decode("utf-8"))["vectors"]
            sizes = {name: int(v["size"]) for name, v in vectors.items()}
        except FileNotFoundError:
            return  # (a shard the engine will refuse to load, with its own error)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._damaged(f"{rel} is unreadable ({exc})") from exc
        expected = (
            {MULTI: encoder.dim, POOLED: encoder.dim} if encoder.kind == "multi" else {DENSE: encoder.dim}
        )
        if sizes != expected:
            raise self._damaged(
                f"{MANIFEST} describes {encoder.kind}-vector pages of dim {encoder.dim} "
                f"({', '.join(f'{k}: {v}' for k, v in sorted(expected.items()))}) but the shard stores "
                f"{', '.join(f'{k}: {v}' for k, v in sorted(sizes.items())) or 'no vectors'}"
            )

    def _committed(self) -> tuple[int, int] | None:
        """``(low, high)``: the page count mmembed committed (a range while a write runs)."""
        try:
            with safe_files.opened(self.path, STATE) as fd, open(fd, "rb", closefd=False) as fh:
                data = json.loads(fh.read().decode("utf-8"))
            low, high = int(data["pages_low"]), int(data["pages_high"])
        except FileNotFoundError:
            return None  # written by an older mmembed: recorded from the next write on
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise self._damaged(f"{STATE} is unreadable ({exc})") from exc
        return low, high

    def _check_committed(self, shard: Any) -> None:
        committed = self._committed()
        if committed is None:
            return
        count = int(shard.count(self._qe.CountRequest(exact=True)))
        low, high = committed
        if not low <= count <= high:
            held = f"{low}" if low == high else f"{low} to {high}"
            raise self._damaged(
                f"the shard holds {count} pages but mmembed committed {held} (segment data was lost "
                "or replaced outside mmembed)"
            )

    def _record(self, low: int, high: int) -> None:
        write_json_atomic(self.path / STATE, {"pages_low": low, "pages_high": high}, root=self.path)

    def _recorded_update(self, operation: Any, added: int, removed: int) -> None:
        """Apply one engine update with the committed page count recorded around it: the
        range it may leave before, the exact count after."""
        before = self._count_all()
        self._record(max(before - removed, 0), before + added)
        self._engine.update(operation)
        after = self._count_all()
        self._record(after, after)

    @property
    def _engine(self) -> qe.EdgeShard:
        assert self._shard is not None
        return self._shard

    # -- the engine's primitives ------------------------------------------------------------

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return _translate(action, self.location)

    def _release(self) -> None:
        self._release_shard()
        self._shard = None

    def _release_from_gc(self) -> None:
        self._release_shard(from_gc=True)
        self._shard = None

    def _put(self, points: list[Point]) -> None:
        qe = self._qe
        batch = [qe.Point(id=pid, vector=vectors, payload=payload) for pid, vectors, payload in points]
        self._recorded_update(qe.UpdateOperation.upsert_points(batch), len(batch), 0)  # one WAL record

    def _fetch(self, pids: list[str], with_payload: Any, with_vectors: bool) -> list[Any]:
        return list(self._engine.retrieve(list(pids), with_payload=with_payload, with_vector=with_vectors))

    def _scroll_page(self, where: list[Condition], with_payload: Any, offset: Any) -> tuple[list[Any], Any]:
        request = self._qe.ScrollRequest(
            offset=offset, limit=SCROLL_PAGE, filter=self._filter(where), with_payload=with_payload
        )
        points, next_offset = self._engine.scroll(request)
        return list(points), next_offset

    def _remove(self, pids: list[str]) -> None:
        self._recorded_update(self._qe.UpdateOperation.delete_points(list(pids)), 0, len(pids))

    def _count_all(self) -> int:
        return int(self._engine.count(self._qe.CountRequest(exact=True)))

    def _visual(self, rows: torch.Tensor, limit: int, flt: Any) -> dict[str, Any]:
        """The visual side's query fields (for a request or a prefetch)."""
        # rows: (query_tokens, dim)
        qe = self._qe
        if self._encoder.kind == "single":
            return {"query": qe.Query.Nearest(rows[0].tolist(), using=DENSE)}
        if self.exact:
            return {
                "query": qe.Query.Nearest(rows.tolist(), using=MULTI),
                "params": qe.SearchParams(exact=True),
            }
        pooled = qe.Prefetch(
            query=qe.Query.Nearest(rows.mean(dim=0).tolist(), using=POOLED),
            limit=max(self.candidates, limit),
            filter=flt,
        )
        return {"query": qe.Query.Nearest(rows.tolist(), using=MULTI), "prefetches": [pooled]}

    def _query(self, rows: torch.Tensor, k: int, only: list[str] | None) -> list[Any]:
        # rows: (query_tokens, dim)
        flt = self._only(only)
        request = self._qe.QueryRequest(
            limit=k, filter=flt, with_payload=self._hit_payload, **self._visual(rows, k, flt)
        )
        return list(self._engine.query(request))

    @property
    def _hit_payload(self) -> Any:
        """A hit's payload: the record without the page text (not part of a hit, possibly long)."""
        return self._qe.PayloadSelector.Exclude([TEXT])

    def _only(self, only: list[Any] | None) -> Any:
        qe = self._qe
        return None if only is None else qe.Filter(must=[qe.HasIdCondition(set(only))])

    def _sparse(self, vector: tuple[list[int], list[float]]) -> Any:
        return self._qe.SparseVector(indices=vector[0], values=vector[1])

    def _query_text(self, sparse: tuple[list[int], list[float]], k: int, only: list[str] | None) -> list[Any]:
        qe = self._qe
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(self._sparse(sparse), using=TEXT),
            filter=self._only(only),
            with_payload=self._hit_payload,
        )
        return list(self._engine.query(request))

    def _query_hybrid(
        self,
        rows: torch.Tensor,
        sparse: tuple[list[int], list[float]],
        depth: int,
        only: list[str] | None,
        rrf_k: int | None,
    ) -> tuple[list[Any], list[Any], list[Any] | None]:
        # rows: (query_tokens, dim)
        qe = self._qe
        flt = self._only(only)
        text_query = {"query": qe.Query.Nearest(self._sparse(sparse), using=TEXT)}
        sides = [self._visual(rows, depth, flt), text_query]
        # alpha builds its hits from the side lists (records); RRF from the fusion's (ids suffice)
        side_payload: Any = ["id"] if rrf_k is not None else self._hit_payload
        requests = [qe.QueryRequest(limit=depth, filter=flt, with_payload=side_payload, **s) for s in sides]
        visual, text = (list(r) for r in self._engine.query_batch(qe.QueryBatchRequest(requests)))
        if rrf_k is None:
            return visual, text, None
        # The engine's fusion over the two lists just found: each prefetch rescores exactly its
        # own side's pages (the same scores, so the same ranks), a few dozen points, not a second search.
        vector = rows.tolist() if self._encoder.kind == "multi" else rows[0].tolist()
        rescore = {
            "query": qe.Query.Nearest(vector, using=MULTI if self._encoder.kind == "multi" else DENSE),
            "params": qe.SearchParams(exact=True),
        }
        prefetches = [
            qe.Prefetch(limit=len(found), filter=self._only([p.id for p in found]), **q)
            for q, found in ((rescore, visual), (text_query, text))
            if found
        ]
        if not prefetches:
            return visual, text, []
        request = qe.QueryRequest(
            limit=depth, prefetches=prefetches, query=qe.Fusion.Rrf(k=rrf_k), with_payload=self._hit_payload
        )
        return visual, text, list(self._engine.query(request))

    def _add_text_vector(self) -> None:
        qe = self._qe
        self._engine.update(qe.UpdateOperation.create_sparse_vector(TEXT, modifier=qe.Modifier.Idf))
        self._engine.flush()  # its edge_config.json, read on the next open

    def _set_text(self, items: list[tuple[str, str, Any]]) -> None:
        qe = self._qe
        for pid, text, _ in items:
            self._engine.update(qe.UpdateOperation.set_payload([pid], {"text": text}))
        vectors = [qe.PointVectors(id=pid, vector={TEXT: v}) for pid, _, v in items if v is not None]
        if vectors:
            self._engine.update(qe.UpdateOperation.update_vectors(vectors))

    def _filter(self, where: list[Condition]) -> Any:
        qe = self._qe
        must: list[Any] = []
        must_not: list[Any] = []
        for op, key, operand in where:
            if op == "no_vector":
                must_not.append(qe.HasVectorCondition(key))
            elif op == "has_vector":
                must.append(qe.HasVectorCondition(key))
            elif op == "eq":
                must.append(qe.FieldCondition(key=key, match=qe.MatchValue(operand)))
            elif op == "any":
                must.append(qe.FieldCondition(key=key, match=qe.MatchAny(operand)))
            else:
                must.append(qe.FieldCondition(key=key, range=qe.RangeFloat(**operand)))
        return qe.Filter(must=must or None, must_not=must_not or None) if must or must_not else None


class _PrivateCopy:
    """Stands in for the lock of a read-only folder: the shard was loaded from a temporary
    copy (the engine rewrites files of the shard it loads), removed on release."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def release(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _nothing_to_release(from_gc: bool = False) -> None:
    return None


def _close_handle(handle: tuple[Any, WriterLock]) -> None:
    shard, lock = handle
    try:
        shard.close()
    finally:
        lock.release()  # only once the engine has let go of the folder


@contextmanager
def _translate(action: str, location: str) -> Iterator[None]:
    try:
        yield
    except MMEmbedError:
        raise
    except Exception as exc:
        if type(exc) is not Exception:  # the engine raises plain Exceptions; ours pass through
            raise
        if "WouldBlock" in str(exc):  # the WAL's lock
            raise IndexLockedError(
                f"the qdrant-edge index at {location} is open in another process ({exc}); the embedded "
                "engine allows one process per folder — close it there, or use a Qdrant server for "
                "concurrent writers."
            ) from exc
        raise MMEmbedError(f"qdrant-edge could not {action} at {location}: {exc}") from exc


def open_qdrant_edge_index(
    uri: str | os.PathLike[str],
    encoder: EncoderInfo | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    keep_thumbnails: bool = True,
    **options: Any,
) -> QdrantEdgeIndex:
    """Open the index at a ``qdrant-edge://PATH`` URI (or a plain folder), creating it when
    missing (needs ``encoder``); an existing one must hold ``encoder``'s vectors."""
    path, query_options = parse_qdrant_edge_uri(str(uri))
    return QdrantEdgeIndex(
        path,
        encoder,
        create=create,
        readonly=readonly,
        keep_thumbnails=keep_thumbnails,
        **{**query_options, **options},
    )


def parse_qdrant_edge_uri(uri: str) -> tuple[str, dict[str, Any]]:
    """``(folder, options)`` of ``qdrant-edge://FOLDER[?exact=true&candidates=N]``."""
    prefix = f"{SCHEME}://"
    rest = uri[len(prefix) :] if uri.lower().startswith(prefix) else uri
    folder, _, query = rest.partition("?")
    if not folder:
        raise MMEmbedError(f"the URI {uri!r} names no folder; write qdrant-edge:///absolute/folder")
    return folder, search_options(query, uri)
