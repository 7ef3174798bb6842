"""Index documents on a Ray cluster with Ray Data.

files (driver lists them) → pages (rendered by CPU tasks, one file per task) → batches →
encoder actors (one per GPU, the model loaded once per actor) → the index. Who writes:

- ``writers="driver"``: one writer (the driver) upserts each encoded batch — the embedded
  index, Qdrant's local mode and qdrant-edge allow one process per folder;
- ``writers="encoders"``: every encoder actor upserts its own batches with its own client
  (config passed through: URI and ``backend_options`` such as ``api_key``), so vectors
  never travel to the driver and writes run in parallel — the default for a Qdrant
  server or cluster (``qdrant://host:6333/pages``). Against a one-process-per-folder target
  the actors take turns (each holds the folder only while it writes one batch).

Page ids are deterministic (content hash + page) and every write is an upsert by id, so
a task Ray retries after a worker died rewrites the same pages instead of duplicating
them, and a re-run skips files whose pages are all committed
(:func:`mmembed.is_source_complete`) — as in the single-process pipeline
(:func:`mmembed.index_documents`), whose report this returns.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import torch
from PIL import Image

from mmembed.explain import LAYOUT_KEY, encoded_layout
from mmembed.index import IndexLockedError, IndexNotFoundError, PageInput, open_backend, uri_scheme
from mmembed.index.protocol import IndexBackend
from mmembed.loaders import LoadIssue, load_pages, make_thumbnail
from mmembed.loaders.errors import NOTE_CODES, LoadError
from mmembed.loaders.options import DEFAULT_MAX_IMAGE_PIXELS, LoaderOptions
from mmembed.loaders.sources import SourceItem, iter_sources
from mmembed.pipeline import IndexReport, is_source_complete
from mmembed.types import EncoderInfo, EncoderMismatchError, MMEmbedError

_EMPTY = b""
CREATION_GRACE = 30.0  # seconds an encoder actor waits for another one to finish creating the index


def _row(kind: str, **fields: Any) -> dict[str, Any]:
    """Every row has every column (Ray Data blocks want one schema)."""
    row: dict[str, Any] = {
        "kind": kind,
        "id": "",
        "source": "",
        "page": 0,
        "page_count": 0,
        "content_hash": "",
        "metadata": "{}",
        "image": _EMPTY,
        "thumbnail": _EMPTY,
        "issue": _EMPTY,
    }
    row.update(fields)
    return row


class _RenderFile:
    """One file → its pages as PNG bytes (lossless, so encoders see the same pixels as
    in a single-process run), plus rows for load problems and unchanged files."""

    def __init__(self, options: dict[str, Any], complete: set[tuple[str, str]], thumbnails: bool) -> None:
        self.options = options
        self.complete = complete
        self.thumbnails = thumbnails

    def __call__(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        skipped: list[str] = []

        def skip(source: str, content_hash: str) -> bool:
            if (source, content_hash) in self.complete:
                skipped.append(source)
                return True
            return False

        stream = load_pages(pickle.loads(item["item"]), skip=skip, prefetch=0, **self.options)
        rows = []
        for page in stream:
            png = io.BytesIO()
            image = page.image
            image.save(png, format="PNG")
            rows.append(
                _row(
                    "page",
                    id=page.id,
                    source=page.source,
                    page=page.page,
                    page_count=page.page_count,
                    content_hash=page.content_hash,
                    metadata=json.dumps({**page.metadata, "page_count": page.page_count}),
                    image=png.getvalue(),
                    thumbnail=make_thumbnail(image) if self.thumbnails else _EMPTY,
                )
            )
            page.release()
        rows += [_row("issue", issue=pickle.dumps(issue)) for issue in stream.issues]
        rows += [_row("unchanged", source=source) for source in skipped]
        return rows


def allows_concurrent_writers(index: str | os.PathLike[str]) -> bool:
    """Whether several processes may write into ``index`` at once: a Qdrant server or
    cluster does; a folder, Qdrant's local mode and qdrant-edge allow one process each."""
    return uri_scheme(index) in ("qdrant", "qdrants") and bool(urlsplit(str(index)).netloc)


def _page_input(batch: dict[str, np.ndarray], i: int, dim: int) -> PageInput:
    """Row ``i`` of an encoded batch as the page to store."""
    vectors = np.frombuffer(batch["vectors"][i], dtype=np.float32).reshape(-1, dim)  # (n_vectors, dim)
    return PageInput(
        embedding=torch.from_numpy(vectors.copy()),
        source=str(batch["source"][i]),
        page=int(batch["page"][i]),
        content_hash=str(batch["content_hash"][i]),
        metadata=json.loads(batch["metadata"][i]),
        thumbnail=bytes(batch["thumbnail"][i]) or None,
        id=str(batch["id"][i]),
    )


class _Encode:
    """A Ray Data actor holding one encoder (loaded once, at its first page, on its GPU when
    it has one); with ``write_to`` it also upserts its batches there and passes on only
    their ids."""

    def __init__(
        self,
        model: str,
        revision: str | None,
        device: str | None,
        write_to: str | None = None,
        backend_options: dict[str, Any] | None = None,
        lock_timeout: float = 600.0,
        creating: bool = False,
        encoder_options: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.revision, self.device = model, revision, device
        self.encoder_options = dict(encoder_options or {})
        self._encoder: Any = None
        self.write_to = write_to
        self.backend_options = backend_options or {}
        self.lock_timeout = lock_timeout
        self.creating = creating
        # A server client stays open for the actor's life; a one-process-per-folder store
        # is held only while writing a batch, so that other actors and the driver get turns.
        self.keep_open = write_to is not None and allows_concurrent_writers(write_to)
        self.writer: IndexBackend | None = None

    @property
    def encoder(self) -> Any:
        """Loaded for the first batch that has pages: a re-run over unchanged files loads none."""
        if self._encoder is None:
            import mmembed

            self._encoder = mmembed.load_encoder(
                self.model, revision=self.revision, device=self.device, **self.encoder_options
            )
            self.info = json.dumps(self._encoder.info.to_dict())
        return self._encoder

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pages = [i for i, kind in enumerate(batch["kind"]) if kind == "page"]
        if not pages:
            return {key: value for key, value in batch.items() if key != "image"} | {
                "vectors": np.array([_EMPTY] * len(batch["kind"]), dtype=object),
                "encoder": np.array([""] * len(batch["kind"]), dtype=object),
            }
        images = [Image.open(io.BytesIO(batch["image"][i])).convert("RGB") for i in pages]
        embeddings, layouts = self.encoder.encode_pages(images)  # layouts: off the same processor run
        vectors = [_EMPTY] * len(batch["kind"])
        metadata = list(batch["metadata"])
        for n, (i, emb, image) in enumerate(zip(pages, embeddings, images, strict=True)):
            vectors[i] = emb.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()  # (n, dim)
            layout = encoded_layout(self.encoder, image, emb, layouts, n)  # as the single-process pipeline
            if layout is not None:
                metadata[i] = json.dumps({**json.loads(metadata[i]), LAYOUT_KEY: layout})
        out = {key: value for key, value in batch.items() if key != "image"}
        out["metadata"] = np.array(metadata, dtype=object)
        out["vectors"] = np.array(vectors, dtype=object)
        out["encoder"] = np.array([self.info] * len(vectors), dtype=object)
        if self.write_to is not None:
            dim = self.encoder.info.dim
            self._write([_page_input(out, i, dim) for i in pages])
            kinds = np.array(out["kind"], dtype=object)  # a str array could be too narrow
            kinds[pages] = "written"
            out["kind"] = kinds
            out["vectors"] = np.array([_EMPTY] * len(vectors), dtype=object)  # nothing heavy to the driver
            out["thumbnail"] = np.array([_EMPTY] * len(vectors), dtype=object)
        return out

    def _write(self, pages: list[PageInput]) -> None:
        assert self.write_to is not None
        start = time.monotonic()
        while True:
            try:
                writer = self.writer or open_backend(self.write_to, self.encoder.info, **self.backend_options)
                break
            except IndexLockedError:
                if time.monotonic() - start > self.lock_timeout:
                    raise
            except EncoderMismatchError:
                raise
            except MMEmbedError:
                # Actors racing to create a new index: the losers see it half-made for a moment.
                if not self.creating or time.monotonic() - start > CREATION_GRACE:
                    raise
            time.sleep(0.05)  # another process is writing its batch, or creating the index
        try:
            writer.upsert(pages)
        finally:
            if self.keep_open:
                self.writer = writer
            else:
                writer.close()


def index_documents(
    sources: str | os.PathLike[str] | Iterable[Any],
    index: str | os.PathLike[str],
    model: str,
    *,
    address: str | None = None,
    encoders: int = 1,
    gpus_per_encoder: float = 0.0,
    cpus_per_encoder: float = 1.0,
    batch_size: int = 8,
    dpi: int = 144,
    max_pixels: int | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    strict: bool = False,
    password: str | dict[str, str] | None = None,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    thumbnails: bool = True,
    revision: str | None = None,
    device: str | None = None,
    writers: Literal["auto", "driver", "encoders"] = "auto",
    backend_options: dict[str, Any] | None = None,
    encoder_options: dict[str, Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> IndexReport:
    """Index ``sources`` into the index at ``index`` (folder or backend URI) on Ray.

    ``address`` is the cluster to join (``"auto"``, ``"ray://head:10001"``); ``None`` uses
    the running Ray or starts a local one. ``encoders`` actors each load ``model`` once
    (``gpus_per_encoder=1`` on a GPU cluster); each holds ``cpus_per_encoder`` logical CPUs,
    so leave CPUs free for the rendering tasks (``encoders * cpus_per_encoder`` below the
    cluster's CPUs, else rendering waits for ever). ``writers`` says who upserts: the
    ``"driver"``, or the ``"encoders"`` in parallel with their own clients (``"auto"``: the
    encoders for a Qdrant server or cluster, else the driver); ``backend_options`` (e.g.
    ``{"api_key": ...}``; ``QDRANT_API_KEY`` is passed on when set) open the index on every
    worker. ``on_batch(pages_committed_so_far)`` runs on the driver after each batch. Bad
    files are reported in the returned :class:`~mmembed.pipeline.IndexReport`, as in the
    single-process pipeline; ``strict=True`` raises :class:`~mmembed.loaders.LoadError` at the
    first one instead (pages of batches committed before it stay, as in the single-process run).
    The loading options (``dpi``, ``max_pixels``, ``max_image_pixels``, ``password``) and
    ``encoder_options`` (family options such as Nomic's ``text_model`` or ColQwen's
    ``max_num_visual_tokens``, what ``mmembed index --option`` passes) reach every worker, so the
    index equals the single-process one built with the same arguments.
    """
    import ray

    if encoders < 1 or batch_size < 1:
        raise MMEmbedError("encoders and batch_size must be at least 1")
    if not ray.is_initialized():
        ray.init(address=address)
    check_resources(ray.cluster_resources(), encoders, cpus_per_encoder, gpus_per_encoder)
    if writers not in ("auto", "driver", "encoders"):
        raise MMEmbedError(f"writers must be 'auto', 'driver' or 'encoders', got {writers!r}")
    in_encoders = writers == "encoders" or (writers == "auto" and allows_concurrent_writers(index))
    options = dict(backend_options or {})
    if (
        uri_scheme(index) in ("qdrant", "qdrants")
        and "api_key" not in options
        and os.environ.get("QDRANT_API_KEY")
    ):
        options["api_key"] = os.environ["QDRANT_API_KEY"]  # workers on other nodes lack the driver's env
    report = IndexReport()
    listing = LoaderOptions(include=include, exclude=exclude)
    items: list[SourceItem] = []
    for found in iter_sources(sources, listing):
        if isinstance(found, LoadIssue):
            if strict and found.code not in NOTE_CODES:
                raise LoadError(found)
            report.issues.append(found)
        else:
            items.append(found)

    writer: IndexBackend | None
    try:
        writer = open_backend(index, create=False, **options)
    except IndexNotFoundError:
        writer = None
    existed = writer is not None
    stored = writer.sources() if writer is not None else {}
    complete = {(s, h) for s, h in stored.items() if writer is not None and is_source_complete(writer, s, h)}
    if in_encoders and writer is not None:
        writer.close()  # the encoders write; a one-process-per-folder store must be free for them
        writer = None
    if not items:
        if writer is not None:
            writer.close()
        return report

    load_options = {
        "dpi": dpi,
        "max_pixels": max_pixels,
        "max_image_pixels": max_image_pixels,
        "password": password,
    }
    files = ray.data.from_items(
        [{"item": pickle.dumps(item.path if item.path is not None else item)} for item in items],
        override_num_blocks=len(items),
    )
    encoded = files.flat_map(_RenderFile(load_options, complete, thumbnails)).map_batches(
        _Encode,
        fn_constructor_kwargs={
            "model": model,
            "revision": revision,
            "device": device,
            "write_to": str(index) if in_encoders else None,
            "backend_options": options,
            "creating": not existed,
            "encoder_options": dict(encoder_options or {}),
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=encoders),
        num_gpus=gpus_per_encoder,
        num_cpus=cpus_per_encoder,
        batch_format="numpy",
    )
    new_hashes: dict[str, str] = {}
    indexed: list[tuple[str, str]] = []  # (id, source) of every page committed, in order
    try:
        for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
            pages: list[PageInput] = []
            for i, kind in enumerate(batch["kind"]):
                if kind == "issue":
                    issue = pickle.loads(batch["issue"][i])
                    if strict and issue.code not in NOTE_CODES:
                        raise LoadError(issue)
                    report.issues.append(issue)
                elif kind == "unchanged":
                    report.files_unchanged.append(str(batch["source"][i]))
                elif kind in ("page", "written"):
                    source = str(batch["source"][i])
                    new_hashes[source] = str(batch["content_hash"][i])
                    if kind == "written":  # already upserted by its encoder actor
                        indexed.append((str(batch["id"][i]), source))
                        continue
                    info = EncoderInfo.from_dict(json.loads(batch["encoder"][i]))
                    if writer is None:
                        writer = open_backend(index, info, **options)
                    writer.encoder.check_compatible(info)
                    pages.append(_page_input(batch, i, writer.encoder.dim))
            if pages:
                assert writer is not None
                indexed += zip(writer.upsert(pages), (p.source for p in pages), strict=True)
            if on_batch is not None:
                on_batch(len(indexed))
        for page_id, source in indexed:
            report.ids.append(page_id)
            if source not in report.files_indexed:
                report.files_indexed.append(source)
        report.pages_indexed = len(indexed)
        # Old pages of a changed file go only once its new pages are all committed.
        changed = [s for s, h in new_hashes.items() if stored.get(s) not in (None, h)]
        if changed and writer is None:
            writer = _open_when_free(index, options)
        for source in changed:
            new_hash = new_hashes[source]
            if writer is not None and is_source_complete(writer, source, new_hash):
                writer.delete(where={"source": source, "content_hash": {"$ne": new_hash}})
                report.files_replaced.append(source)
    finally:
        if writer is not None:
            writer.close()
    return report


RENDER_CPUS = 1.0
"""Logical CPUs a rendering task takes (Ray's default for a task)."""


def check_resources(
    resources: dict[str, float], encoders: int, cpus_per_encoder: float, gpus_per_encoder: float
) -> None:
    """Refuse a run the cluster cannot schedule, before it starts: encoder actors that take
    every CPU leave none for the rendering tasks, and Ray would then wait for ever, silently."""
    cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
    needed = encoders * cpus_per_encoder
    if needed + RENDER_CPUS > cpus:
        fits = max(int((cpus - RENDER_CPUS) // cpus_per_encoder), 0) if cpus_per_encoder > 0 else encoders
        fix = f"use encoders={fits} (--encoders {fits})" if fits >= 1 else "give the cluster more CPUs"
        raise MMEmbedError(
            f"{encoders} encoder actor(s) x {cpus_per_encoder:g} CPU take {needed:g} of the Ray cluster's "
            f"{cpus:g} CPU(s), leaving less than the {RENDER_CPUS:g} a page-rendering task needs, so "
            f"rendering would never start: {fix}, lower cpus_per_encoder, or add CPUs "
            "to the cluster (ray start --num-cpus N)"
        )
    if gpus_per_encoder > 0 and encoders * gpus_per_encoder > gpus:
        raise MMEmbedError(
            f"{encoders} encoder actor(s) x {gpus_per_encoder:g} GPU need {encoders * gpus_per_encoder:g} "
            f"GPU(s); the Ray cluster has {gpus:g}: lower --encoders or --gpus-per-encoder"
        )


def _open_when_free(
    index: str | os.PathLike[str], options: dict[str, Any], timeout: float = 600.0
) -> IndexBackend:
    """The index, once the encoder actors (which may linger a moment after the run) let go
    of a one-process-per-folder store."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open_backend(index, create=False, **options)
        except IndexLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
