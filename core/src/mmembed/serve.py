"""``mmembed serve``: a local search page and JSON API over one index.

Long because the routes, the page renderer and the safe-by-default checks (host header,
bounds, pages of the index only) are one small server, read and reviewed together.

Safe by default: it binds to loopback, answers only requests whose ``Host`` header names the
address it is bound to (a web page cannot reach it through DNS rebinding; ``allowed_hosts`` /
``--allowed-host`` add names), opens the index read-only (another process may keep
indexing; new pages show up at the next request), bounds ``k`` and the query length, and
serves only pages *of the index*: a request names a page id, never a path, and the full
page is rendered from the source file the index recorded (only while its bytes still hash
to what was indexed; otherwise the stored thumbnail is shown).

Routes: ``GET /`` (the page), ``GET /search?q=&k=&source=&page_min=&page_max=&mode=``
(``mode``: ``visual``, ``text`` or ``hybrid``),
``GET /sources`` (pages, sources, the index's model, ``max_k``), ``GET /pages/{id}/thumbnail``,
``GET /pages/{id}/image``, ``GET /pages/{id}/neighbour?step=±1`` (the previous / next page of the
same document), ``GET /pages/{id}/explain?q=[&token=i]`` (the similarity overlay of the whole query
or of one token, multi-vector image models) and ``GET /pages/{id}/explain/tokens?q=``.
"""

from __future__ import annotations

import io
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .types import MMEmbedError, PageRecord

if TYPE_CHECKING:
    from PIL import Image

    from .encoders.base import Encoder
    from .explain import Explanation
    from .index.protocol import IndexBackend

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_K = 50
MAX_QUERY_CHARS = 512
PAGE_DPI = 110
_RENDER_MEMO = 16
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD_BINDS = ("", "0.0.0.0", "::")


def allowed_hosts(bind_host: str = DEFAULT_HOST, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` header names a request may carry when the server binds ``bind_host``: the
    bound name and the loopback names; for a wildcard bind (``0.0.0.0``) also this machine's
    host names and addresses; plus ``extra`` (``"*"`` turns the check off)."""
    host = bind_host.strip("[]").lower()
    names = {*LOOPBACK_NAMES, *(_as_header(e) for e in extra if e.strip())}
    if host not in _WILDCARD_BINDS:
        names.add(_as_header(host))
    else:
        for name in {socket.gethostname(), socket.getfqdn()}:
            names.add(name.lower())
            try:
                names.update(socket.gethostbyname_ex(name)[2])
            except OSError:
                pass
    return sorted(names)


def _as_header(name: str) -> str:
    """How a name appears in a ``Host`` header: IPv6 addresses in brackets."""
    name = name.strip().strip("[]").lower()
    return f"[{name}]" if ":" in name else name


_EXPLAIN_MEMO = 8


def require_web() -> None:
    """Refuse early, before the index and the model are opened, when the ``[serve]`` extra is missing."""
    _require_web()


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MMEmbedError(
            f"`mmembed serve` needs FastAPI and uvicorn ({exc.name} is missing): "
            "pip install 'mmembed-core[serve]'"
        ) from exc


class PageServer:
    """What the web routes call: search, and page images looked up by id only."""

    def __init__(self, index: IndexBackend, encoder: Encoder, *, dpi: float = PAGE_DPI) -> None:
        from .retrieve import Retriever

        self.retriever = Retriever(index, encoder)
        self.index = index
        self.dpi = float(dpi)
        # The model is not re-entrant: requests run in a thread pool, one encodes at a time.
        self._model_lock = threading.Lock()
        self._renders: OrderedDict[tuple[str, str], Image.Image] = OrderedDict()
        self._pngs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._renders_lock = threading.Lock()
        self._explained: OrderedDict[tuple[str, str, str], Explanation] = OrderedDict()

    def search(
        self, query: str, k: int, where: dict[str, Any] | None, mode: str = "visual"
    ) -> list[dict[str, Any]]:
        with self._model_lock:
            hits = self.retriever.search(query, k=k, where=where, mode=mode)
        return [
            {
                "rank": rank,
                "id": hit.id,
                "score": hit.score,
                "source": hit.source,
                "name": Path(hit.source).name,
                "page": hit.page,
                "metadata": hit.metadata,
                "thumbnail": f"pages/{hit.id}/thumbnail" if hit.record.thumbnail else None,
                "image": f"pages/{hit.id}/image",
                "matches": [m.to_json() for m in hit.matches],
            }
            for rank, hit in enumerate(hits, 1)
        ]

    def sources(self) -> list[dict[str, str]]:
        return [{"source": s, "name": Path(s).name} for s in sorted(self.index.sources())]

    def record(self, page_id: str) -> PageRecord | None:
        return self.index.get([page_id])[0]

    def neighbour(self, record: PageRecord, step: int) -> PageRecord | None:
        """The page ``step`` pages away in the same document, if the index holds it."""
        found = list(self.index.records({"$and": [{"source": record.source}, {"page": record.page + step}]}))
        return found[0] if found else None

    def page_image(self, record: PageRecord) -> Image.Image | None:
        """The full page rendered from its recorded source if that file is still the one
        indexed, else the stored thumbnail; ``None`` when neither is available."""
        from PIL import Image

        from .retrieve import page_image

        key = (record.id, record.content_hash)
        with self._renders_lock:
            cached = self._renders.get(key)
            if cached is not None:
                self._renders.move_to_end(key)
                return cached
        try:
            image = page_image(record, dpi=self.dpi)
        except (MMEmbedError, OSError):  # changed or unreadable: never show a different page
            if record.thumbnail is None:
                return None
            image = Image.open(io.BytesIO(record.thumbnail)).convert("RGB")
        with self._renders_lock:
            self._renders[key] = image
            while len(self._renders) > _RENDER_MEMO:
                self._renders.popitem(last=False)
        return image

    def page_png(self, record: PageRecord) -> bytes | None:
        key = (record.id, record.content_hash)
        with self._renders_lock:
            cached = self._pngs.get(key)
        if cached is not None:
            return cached
        image = self.page_image(record)
        if image is None:
            return None
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")  # lossless: small print stays legible
        with self._renders_lock:
            self._pngs[key] = buffer.getvalue()
            while len(self._pngs) > _RENDER_MEMO:
                self._pngs.popitem(last=False)
        return buffer.getvalue()

    def explanation(self, query: str, record: PageRecord) -> Explanation:
        """Where each token of ``query`` matched on the page (the last few are remembered: the
        page asks for the token list and then for each token's overlay)."""
        key = (query, record.id, record.content_hash)
        with self._renders_lock:
            cached = self._explained.get(key)
        if cached is not None:
            return cached
        image = self.page_image(record)
        if image is None:
            raise MMEmbedError(f"page {record.page} of {record.source} has no image to explain")
        with self._model_lock:
            explanation = self.retriever.explain(query, record, image=image)
        with self._renders_lock:
            self._explained[key] = explanation
            while len(self._explained) > _EXPLAIN_MEMO:
                self._explained.popitem(last=False)
        return explanation

    def explain_png(self, query: str, record: PageRecord, token: int | None = None) -> bytes:
        """The similarity overlay of ``query`` (or of its token ``token``) on the page, as PNG bytes."""
        buffer = io.BytesIO()
        self.explanation(query, record).overlay(token).save(buffer, format="PNG")
        return buffer.getvalue()


FAVICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
    b'fill="#1d3557"/><rect x="8" y="6" width="16" height="20" rx="2" fill="#fff"/><circle cx="19" cy="19" '
    b'r="5" fill="none" stroke="#e63946" stroke-width="3"/></svg>'
)


def _image_type(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"


def _where(source: str | None, page_min: int | None, page_max: int | None) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if source:
        clauses.append({"source": source})
    page: dict[str, int] = {}
    if page_min is not None:
        page["$gte"] = page_min
    if page_max is not None:
        page["$lte"] = page_max
    if page:
        clauses.append({"page": page})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def create_app(
    server: PageServer,
    *,
    max_k: int = MAX_K,
    max_query_chars: int = MAX_QUERY_CHARS,
    hosts: Sequence[str] | None = None,
) -> Any:
    """The FastAPI application over ``server`` (run it with uvicorn). Requests whose ``Host``
    header is not in ``hosts`` (default: the loopback names, see :func:`allowed_hosts`) get
    400, so a page on another site cannot reach the server by rebinding its DNS name."""
    _require_web()
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, Response
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app = FastAPI(title="mmembed search", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        TrustedHostMiddleware,
        allowed_hosts=list(hosts) if hosts is not None else allowed_hosts(),
        www_redirect=False,
    )
    page_html = resources.files("mmembed").joinpath("static/search.html").read_text(encoding="utf-8")

    def known(page_id: str) -> PageRecord:
        record = server.record(page_id)
        if record is None:
            raise HTTPException(404, f"no page {page_id!r} in this index")
        return record

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return page_html

    @app.get("/search")
    def search(
        q: str = Query(min_length=1, max_length=max_query_chars),
        k: int = Query(10, ge=1, le=max_k),
        source: str | None = Query(None, max_length=4096),
        page_min: int | None = Query(None, ge=1),
        page_max: int | None = Query(None, ge=1),
        mode: Literal["visual", "text", "hybrid"] = Query("visual"),
    ) -> dict[str, Any]:
        if not q.strip():
            raise HTTPException(422, "q is blank: type a query")
        if page_min is not None and page_max is not None and page_min > page_max:
            raise HTTPException(
                422, f"the page range {page_min}-{page_max} is reversed: from must not exceed to"
            )
        try:
            hits = server.search(q, k, _where(source, page_min, page_max), mode)
        except MMEmbedError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"query": q, "k": k, "mode": mode, "hits": hits}

    @app.get("/sources")
    def sources() -> dict[str, Any]:
        encoder = server.index.encoder
        return {
            "pages": server.index.count(),
            "sources": server.sources(),
            "model": {"name": encoder.name, "family": encoder.family, "kind": encoder.kind},
            "max_k": max_k,
            "max_query_chars": max_query_chars,
        }

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(FAVICON_SVG, media_type="image/svg+xml")

    @app.get("/pages/{page_id}/neighbour")
    def neighbour(page_id: str, step: int = Query(ge=-1, le=1)) -> dict[str, Any]:
        record = known(page_id)
        found = server.neighbour(record, step) if step else record
        if found is None:
            raise HTTPException(404, f"{Path(record.source).name} has no indexed page {record.page + step}")
        return {
            "id": found.id,
            "source": found.source,
            "name": Path(found.source).name,
            "page": found.page,
            "page_count": found.metadata.get("page_count"),
        }

    @app.get("/pages/{page_id}/thumbnail")
    def thumbnail(page_id: str) -> Response:
        record = known(page_id)
        if record.thumbnail is None:
            raise HTTPException(404, f"page {page_id!r} has no stored thumbnail")
        return Response(record.thumbnail, media_type=_image_type(record.thumbnail))

    @app.get("/pages/{page_id}/image")
    def image(page_id: str) -> Response:
        png = server.page_png(known(page_id))
        if png is None:
            raise HTTPException(404, f"page {page_id!r}: its source file is gone and no thumbnail was kept")
        return Response(png, media_type="image/png")

    @app.get("/pages/{page_id}/explain")
    def explain(
        page_id: str,
        q: str = Query(min_length=1, max_length=max_query_chars),
        token: int | None = Query(None, ge=0),
    ) -> Response:
        record = known(page_id)
        try:
            png = server.explain_png(q, record, token)
        except MMEmbedError as exc:
            raise HTTPException(409, str(exc)) from exc
        return Response(png, media_type="image/png")

    @app.get("/pages/{page_id}/explain/tokens")
    def explain_tokens(
        page_id: str, q: str = Query(min_length=1, max_length=max_query_chars)
    ) -> dict[str, Any]:
        record = known(page_id)
        try:
            return {"tokens": list(server.explanation(q, record).tokens)}
        except MMEmbedError as exc:
            raise HTTPException(409, str(exc)) from exc

    return app


def open_server(
    index_path: str | os.PathLike[str], *, model: str | None = None, **encoder_options: Any
) -> PageServer:
    """A :class:`PageServer` over the index at ``index_path`` (read-only) and its encoder
    (``model`` overrides the checkpoint the index recorded; without it, the family options
    the index recorded, such as Nomic's ``tiles``, apply under ``encoder_options``)."""
    from .encoders import load_encoder
    from .encoders.registry import recorded_options
    from .index import open_backend, uri_scheme

    # A folder must exist; a backend URI (qdrant://, qdrant-edge://) is checked by its backend.
    if uri_scheme(index_path) is None and not Path(index_path).exists():
        raise MMEmbedError(
            f"no index at {index_path}: create one with `mmembed index FILES... --index {index_path}`"
        )
    index = open_backend(index_path, create=False, readonly=True)
    try:
        if model is None:
            encoder_options = {**recorded_options(index.encoder), **encoder_options}
        encoder = load_encoder(model or index.encoder.name, **encoder_options)
        return PageServer(index, encoder)
    except BaseException:
        index.close()
        raise


def serve(
    index_path: str | os.PathLike[str],
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    model: str | None = None,
    max_k: int = MAX_K,
    allowed_host: Sequence[str] = (),
    announce: Callable[[str], None] | None = None,
    **encoder_options: Any,
) -> None:
    """Serve the search page for ``index_path`` until interrupted; requests must name ``host``
    (or a loopback name, or one of ``allowed_host``) in their ``Host`` header. ``announce(url)``
    is called once the model is loaded and the socket listens, i.e. when the page answers."""
    _require_web()
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and announce is not None:
                announce(f"http://{host}:{port}/")

    server = open_server(index_path, model=model, **encoder_options)
    try:
        app = create_app(server, max_k=max_k, hosts=allowed_hosts(host, allowed_host))
        config = uvicorn.Config(app, host=host, port=port, log_level="info")
        AnnouncingServer(config).run()
    finally:
        server.index.close()
