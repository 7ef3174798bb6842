"""Search an index with an encoder, rerank candidates by MaxSim, pool multi-vectors.

Long because the three operations every adapter needs (:class:`Retriever`,
:class:`MaxSimReranker`, :func:`pool`) and their shared checks live together, so that the
adapters behave the same and only translate types.

These are the three operations every framework adapter needs; keeping them here means
the adapters only translate types.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import torch

from .index.errors import IndexNotFoundError
from .index.protocol import Filter, IndexBackend
from .scoring import score
from .types import EncoderInfo, EncoderMismatchError, MMEmbedError, PageRecord, SearchHit

if TYPE_CHECKING:
    from PIL import Image

    from .encoders.base import Encoder
    from .explain import Explanation, PatchLayout

logger = logging.getLogger(__name__)

_HASH_MEMO = 256
"""Source files whose hash a reranker remembers (keyed by path, mtime and size)."""


def pool(embedding: torch.Tensor) -> torch.Tensor:
    """One vector standing for a (multi-vector) embedding.

    The mean of the L2-normalised token vectors, L2-normalised again: cosine / dot
    similarity between pooled vectors then approximates the average token-level
    similarity. It lets any single-vector store serve as a first stage before an exact
    MaxSim rerank. A single-vector embedding ``(1, dim)`` is returned unchanged as ``(dim,)``.

    >>> import torch
    >>> pool(torch.tensor([[3.0, 0.0], [0.0, 2.0]]))  # (2 vectors, dim 2) -> (2,)
    tensor([0.7071, 0.7071])
    """
    if embedding.ndim != 2 or embedding.shape[0] == 0:
        raise MMEmbedError(f"expected a non-empty (n_vectors, dim) embedding, got {tuple(embedding.shape)}")
    if embedding.shape[0] == 1:
        return embedding[0].float()
    tokens = torch.nn.functional.normalize(embedding.float(), dim=-1)  # (n_vectors, dim)
    return torch.nn.functional.normalize(tokens.mean(dim=0), dim=-1)  # (dim,)


def as_single_vectors(embeddings: Sequence[torch.Tensor]) -> list[list[float]]:
    """Plain float lists (what framework vector stores take), pooling multi-vectors."""
    return [pool(e).tolist() for e in embeddings]


PRIVATE_METADATA_PREFIXES = ("haystack.", "_mmembed_")
"""Metadata keys an adapter keeps for itself in a shared index (Haystack's document marker,
content and blob) or core keeps for itself (a page's patch layout): adapters leave them out
of what they show."""

SIMILARITY_MAP_KEY = "similarity_map"
"""Result-metadata key under which every adapter's ``explain=True`` puts
:meth:`Retriever.explain_metadata`."""


HAYSTACK_PAGE_KEYS = {"file_path": str, "page_number": int, "content_hash": str}
"""Haystack's names for a page's location, which its store keeps in a page's metadata and also
writes to the record's own ``source`` / ``page`` / ``content_hash``."""


def shared_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A page record's metadata without adapter-private keys (see :data:`PRIVATE_METADATA_PREFIXES`).

    On a page a Haystack pipeline wrote (marked ``haystack.document``), Haystack's own location
    keys (``file_path``, ``page_number``, ``content_hash``) are left out too: the record carries
    them as ``source`` / ``page`` / ``content_hash``, which every adapter shows under its own
    names, so such a page reads like one ``mmembed index`` wrote."""
    shared = {k: v for k, v in metadata.items() if not k.startswith(PRIVATE_METADATA_PREFIXES)}
    if metadata.get("haystack.document"):
        for key, kind in HAYSTACK_PAGE_KEYS.items():
            if isinstance(shared.get(key), kind) and not isinstance(shared.get(key), bool):
                del shared[key]
    return shared


class InvalidQueryError(MMEmbedError, ValueError):
    """A search or rerank request that cannot mean anything (empty query, k below 1)."""


def check_k(k: int, name: str = "k") -> None:
    """The one rule for how many results a search returns, in core and every adapter: at least 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidQueryError(f"{name} must be an integer of at least 1, got {k!r}")


def check_query(query: str) -> None:
    """Refuse an empty or blank query: it would rank pages by nothing and look like an answer."""
    if not isinstance(query, str):
        raise TypeError(f"a query is a string, got {type(query).__name__}")
    if not query.strip():
        raise InvalidQueryError(f"the query is empty ({query!r}): give the text to search for")


class Retriever:
    """Text queries in, ranked pages out: an encoder plus an index it is compatible with."""

    def __init__(self, index: IndexBackend, encoder: Encoder, *, allow_empty: bool = False) -> None:
        """``allow_empty``: the caller created the index on purpose, so an index that
        ``open_index`` has just created empty is searched (no hits) instead of refused as a
        probable typo in the path."""
        index.encoder.check_compatible(encoder.info, index_path=str(getattr(index, "path", "")))
        self.index = index
        self.encoder = encoder
        self.allow_empty = allow_empty

    def _check_not_a_typo(self) -> None:
        if not self.allow_empty and getattr(self.index, "created_now", False) and self.index.count() == 0:
            path = getattr(self.index, "path", "")
            raise IndexNotFoundError(
                f"the index at {path} was created empty when it was opened, so there is nothing to "
                "search: is the path mistyped? Build it first (`mmembed index <files> --index "
                f"{path}` or mmembed.index_documents), or open an existing index with "
                "open_index(path, create=False), which refuses a missing one."
            )

    @overload
    def search(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]
        self,
        queries: str,
        k: int = ...,
        where: Filter | None = ...,
        *,
        mode: str = ...,
        alpha: float | None = ...,
        rrf_k: int | None = ...,
        **shortlist: Any,
    ) -> list[SearchHit]: ...
    @overload
    def search(
        self,
        queries: Sequence[str],
        k: int = ...,
        where: Filter | None = ...,
        *,
        mode: str = ...,
        alpha: float | None = ...,
        rrf_k: int | None = ...,
        **shortlist: Any,
    ) -> list[list[SearchHit]]: ...

    def search(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        where: Filter | None = None,
        *,
        mode: str = "visual",
        alpha: float | None = None,
        rrf_k: int | None = None,
        **shortlist: Any,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Top-``k`` pages for one query (a list of hits) or several (a list per query).
        ``shortlist`` (``candidates=C``, ``exact=True``) goes to the embedded index's search.

        ``mode``: ``"visual"`` (default: the page images' vectors), ``"text"`` (the pages' own
        text layer, FTS5 bm25; no query encoding) or ``"hybrid"`` (both, fused by reciprocal
        rank fusion with ``rrf_k``, default 60, or by ``alpha * visual + (1 - alpha) * text`` of
        normalised scores). Text and hybrid hits say which side found them (``hit.matches``).

        :raises ValueError: ``k`` is below 1, or a query is empty or blank.
        """
        from .index.fusion import search_options

        check_k(k)
        options = search_options(mode, alpha, rrf_k)
        self._check_not_a_typo()
        single = isinstance(queries, str)
        texts = [queries] if isinstance(queries, str) else list(queries)
        for text in texts:
            check_query(text)
        if not texts:
            return []
        if options.mode == "visual":
            embeddings = self.encoder.encode_queries(texts)
            hits = self.index.search(embeddings, k=k, where=where, **shortlist)
        else:
            hits = self._search_modes(texts, k, where, options, shortlist)
        return hits[0] if single else hits

    def _search_modes(
        self, texts: list[str], k: int, where: Filter | None, options: Any, shortlist: dict[str, Any]
    ) -> list[list[SearchHit]]:
        """Text and hybrid modes, on any backend that takes ``mode=`` (the embedded index,
        Qdrant); others are refused naming the backend."""
        if not supports_modes(self.index):
            raise MMEmbedError(
                f"mode={options.mode!r} needs a backend with a text index; {type(self.index).__name__} "
                "only searches vectors (see docs/hybrid.md). Use an index folder (the embedded index) or "
                "a Qdrant URI, or mode='visual'."
            )
        embeddings = self.encoder.encode_queries(texts) if options.mode == "hybrid" else None
        search: Any = self.index.search  # a backend whose search takes mode= (checked above)
        return search(  # type: ignore[no-any-return]
            embeddings,
            k=k,
            where=where,
            mode=options.mode,
            texts=texts,
            alpha=options.alpha,
            rrf_k=options.rrf_k if options.mode == "hybrid" and options.alpha is None else None,
            **shortlist,
        )

    def explain(
        self, query: str, hit: SearchHit | PageRecord, *, image: Image.Image | None = None, dpi: float = 144
    ) -> Explanation:
        """Where on ``hit``'s page each token of ``query`` matched: per-token similarity
        maps over the page's patch grid (see :class:`mmembed.explain.Explanation`).

        The maps come from the page's stored vectors when the index recorded its patch
        layout (indexed by this version, vectors not pooled); otherwise the page is
        re-encoded. ``Explanation.vectors_from`` says which. The overlay is drawn on
        ``image``, else the page rendered from its recorded source at ``dpi``, else its
        stored thumbnail. Multi-vector image families only (others raise "not available
        for this model").
        """
        record = hit.record if isinstance(hit, SearchHit) else hit
        if image is None:
            image = page_image(record, dpi=dpi)
        stored = self._stored_patches(record)
        if stored is not None:
            return self.encoder.explain_vectors(query, stored[0], stored[1], image)
        return self.encoder.explain_page(query, image)

    def explain_metadata(
        self, query: str, hit: SearchHit | PageRecord, *, dpi: float = 144
    ) -> dict[str, Any]:
        """What the adapters' ``explain=True`` puts under :data:`SIMILARITY_MAP_KEY`: the
        aggregate overlay as base64 PNG, the patch grid's ``rows`` / ``cols``, the query's
        ``tokens`` and ``vectors_from`` (``"stored"`` / ``"re-encoded"``)."""
        import base64
        import io

        explanation = self.explain(query, hit, dpi=dpi)
        png = io.BytesIO()
        explanation.overlay().save(png, format="PNG")
        _, rows, cols = explanation.maps.shape
        return {
            "png_base64": base64.b64encode(png.getvalue()).decode("ascii"),
            "rows": rows,
            "cols": cols,
            "tokens": list(explanation.tokens),
            "vectors_from": explanation.vectors_from,
        }

    def _stored_patches(self, record: PageRecord) -> tuple[torch.Tensor, PatchLayout] | None:
        """The page's stored vectors ``(page_tokens, dim)`` and recorded layout, when they can
        stand for re-encoding: ``None`` for pages indexed without a layout, and for indexes
        whose stored vectors are pooled (they no longer map to patches)."""
        from .explain import LAYOUT_KEY, PatchLayout

        recorded = record.metadata.get(LAYOUT_KEY)
        if recorded is None or stored_vectors_pooled(self.index):
            return None
        try:
            layout = PatchLayout.from_json(recorded)
        except MMEmbedError as err:
            logger.warning("page %s: %s; re-encoding it to explain", record.id, err)
            return None
        vectors = self.index.get_embeddings([record.id])[0]
        # The layout was made for exactly this many vectors; any other count means they changed.
        if vectors is None or vectors.ndim != 2 or vectors.shape[0] != recorded.get("vectors", -1):
            return None
        return vectors, layout


def supports_modes(index: object) -> bool:
    """Whether ``index.search`` takes ``mode="text" | "hybrid"`` (the backend has a text index)."""
    import inspect

    search = getattr(index, "search", None)
    if search is None:
        return False
    try:
        return "mode" in inspect.signature(search).parameters
    except (TypeError, ValueError):
        return False


def index_encoder(info: EncoderInfo) -> Encoder:
    """The encoder an index was built with (``info`` from its manifest), loaded with the family
    options it recorded (e.g. Nomic's ``tiles``), through the process-wide encoder cache."""
    from .encoders import load_encoder
    from .encoders.registry import recorded_options

    return load_encoder(info.name, revision=info.revision, **recorded_options(info))


def stored_vectors_pooled(index: IndexBackend) -> bool:
    """Whether ``index`` keeps fewer vectors than the encoder made per page (token pooling,
    the embedded index's validated ``pooling`` factor): then stored rows are no longer patches.
    Backends without the option store what they are given."""
    return int(getattr(index, "pooling", 1)) > 1


def page_image(record: PageRecord, *, dpi: float = 144) -> Image.Image:
    """The page of ``record`` rendered from its source file, refused when that file changed
    since indexing; the stored thumbnail when the file is gone."""
    import io

    from PIL import Image

    from .loaders import render_page
    from .loaders.sources import SourceItem, digest

    path = Path(record.source)
    if path.is_file():
        current = digest(SourceItem(name=record.source, path=path)).content_hash
        if current != record.content_hash:
            raise MMEmbedError(
                f"{record.source} changed since it was indexed, so page {record.page} may no longer be "
                "the page retrieved. Re-index it (`mmembed index <file> --index <folder>`), then search again."
            )
        return render_page(record.source, record.page, dpi=dpi)
    if record.thumbnail is not None:
        return Image.open(io.BytesIO(record.thumbnail)).convert("RGB")
    raise MMEmbedError(
        f"page {record.page} of {record.source} cannot be shown: the file is gone and the index kept "
        "no thumbnail. Put the file back at that path, or re-index it."
    )


@dataclass(frozen=True)
class Candidate:
    """A page to rerank. Give whatever is known: the index ``id`` (vectors are reused when
    the page is stored), the ``image``, or ``source`` + ``page`` to render it.

    ``content_hash`` (hex sha256 of the source file, as recorded at indexing) guards
    rendering: when the page must be rendered from ``source``, a file whose bytes no
    longer have that hash is refused instead of silently scoring a different page.
    """

    id: str | None = None
    image: Image.Image | None = None
    source: str | None = None
    page: int | None = None
    content_hash: str | None = None

    def describe(self) -> str:
        if self.source is not None:
            return f"{self.source} page {self.page}" if self.page is not None else self.source
        return f"id {self.id}" if self.id is not None else "an image candidate"


class MaxSimReranker:
    """Rerank candidate pages for a query by exact late-interaction scores.

    Page vectors come, in order of preference, from the ``index`` (when it was built with
    the same encoder and holds the candidate's id with vectors), from an in-memory LRU
    cache of pages this reranker already encoded, or from encoding the page (its image, or
    ``source`` + ``page`` rendered by the shared loader at ``dpi``). :attr:`pages_reused`
    and :attr:`pages_encoded` count the first and the last path.
    """

    def __init__(
        self,
        encoder: Encoder,
        index: IndexBackend | None = None,
        *,
        cache_size: int = 1024,
        dpi: float = 144,
        batch_size: int | None = None,
    ) -> None:
        self.encoder = encoder
        self.index = index
        self._reuse_index = False
        if index is not None:
            try:
                index.encoder.check_compatible(encoder.info)
                self._reuse_index = True
            except EncoderMismatchError:
                pass  # e.g. a dense first-stage index: its vectors are not MaxSim vectors
        self.dpi = float(dpi)
        # (real path, mtime_ns, size) -> sha256, so an unchanged file is hashed once.
        self._hashes: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self.batch_size = batch_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.pages_encoded = 0
        self.pages_reused = 0

    @property
    def reuses_index(self) -> bool:
        """Whether stored vectors are read from :attr:`index` (it was built with this
        reranker's encoder); ``False`` without an index or for a mismatched one."""
        return self._reuse_index

    def _cache_key(self, c: Candidate) -> str | None:
        if c.id is not None:
            return f"id:{c.id}"
        if c.source is not None and c.page is not None:
            version = f"@{c.content_hash}" if c.content_hash else ""
            return f"src:{c.source}{version}#{c.page}"
        if c.image is not None:
            digest = hashlib.sha256(c.image.tobytes()).hexdigest()
            return f"img:{c.image.size}:{digest}"
        return None

    def embeddings(self, candidates: Sequence[Candidate]) -> list[torch.Tensor]:
        """Vectors ``(n_vectors, dim)`` of every candidate, encoding only the unknown ones."""
        found: list[torch.Tensor | None] = [None] * len(candidates)
        keys = [self._cache_key(c) for c in candidates]
        if self._reuse_index and self.index is not None:
            positions = [i for i, c in enumerate(candidates) if c.id is not None]
            if positions:
                stored = self.index.get_embeddings([candidates[i].id for i in positions])  # type: ignore[misc]
                for i, emb in zip(positions, stored, strict=True):
                    if emb is not None and emb.shape[0] > 0:  # (0, dim): stored without vectors
                        found[i] = emb
                        self.pages_reused += 1
        with self._lock:
            for i, key in enumerate(keys):
                if found[i] is None and key is not None and key in self._cache:
                    self._cache.move_to_end(key)
                    found[i] = self._cache[key]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            images = [self._image_of(candidates[i]) for i in missing]
            encoded = self.encoder.encode_images(images, batch_size=self.batch_size)
            self.pages_encoded += len(missing)
            with self._lock:
                for i, emb in zip(missing, encoded, strict=True):
                    found[i] = emb
                    key = keys[i]
                    if key is not None:
                        self._cache[key] = emb
                        self._cache.move_to_end(key)
                        while len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
        return [f for f in found if f is not None]

    def _image_of(self, c: Candidate) -> Image.Image:
        if c.image is not None:
            return c.image.convert("RGB")
        if c.source is not None:
            from .loaders import render_page
            from .loaders.sources import kind_of

            if kind_of(Path(c.source).suffix.lower()) == "media":
                raise MMEmbedError(
                    f"cannot rerank {c.describe()}: it is an audio / video segment that is not in the "
                    "reranker's index. Give the reranker the index the segment was indexed into (index=...), "
                    "so its stored vectors are used."
                )

            if c.content_hash:
                self._check_unchanged(c.source, c.content_hash)
            return render_page(c.source, c.page or 1, dpi=self.dpi)
        raise MMEmbedError(
            f"cannot rerank {c.describe()}: it is not in the index and carries neither an image nor a "
            "source file + page number. Keep the page's file path and page number in the document "
            "metadata, or attach its image."
        )

    def _check_unchanged(self, source: str, content_hash: str) -> None:
        """Refuse to render ``source`` if its bytes no longer hash to ``content_hash``."""
        try:
            stat = os.stat(source)
        except OSError:
            return  # not a readable local file: rendering reports it, naming the file
        key = (os.path.realpath(source), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            current = self._hashes.get(key)
        if current is None:
            from .loaders.sources import SourceItem, digest

            try:
                current = digest(SourceItem(name=source, path=Path(source))).content_hash
            except OSError:
                return
            with self._lock:
                self._hashes[key] = current
                while len(self._hashes) > _HASH_MEMO:
                    self._hashes.popitem(last=False)
        if current != content_hash:
            raise MMEmbedError(
                f"{source} changed since it was indexed (its sha256 is now {current[:12]}…, the index "
                f"recorded {content_hash[:12]}…), so its pages may no longer be the ones retrieved. "
                "Re-index it (e.g. `mmembed index <file> --index <folder>`), then search again."
            )

    def rerank(
        self, query: str, candidates: Sequence[Candidate], top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """``(candidate position, score)`` pairs, best first, at most ``top_n`` of them.

        :raises ValueError: the query is empty or blank, or ``top_n`` is below 1.
        """
        check_query(query)
        if top_n is not None:
            check_k(top_n, "top_n")
        if not candidates:
            return []
        query_embedding = self.encoder.encode_queries([query])
        page_embeddings = self.embeddings(candidates)
        scores = score(query_embedding, page_embeddings, self.encoder.info.similarity)[0]  # (n_candidates,)
        # Stable order on ties: the first stage's order wins.
        order = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), i))
        if top_n is not None:
            order = order[:top_n]
        return [(i, float(scores[i])) for i in order]
