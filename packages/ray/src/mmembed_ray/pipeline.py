"""Index documents on a Ray cluster with Ray Data.

files (driver lists them) → pages (rendered by CPU tasks, one file per task) → batches →
encoder actors (one per GPU, the model loaded once per actor) → one writer (the driver)
that upserts each batch into the index — the embedded one or any backend URI such as
``qdrant://host:6333/pages``.

Page ids are deterministic (content hash + page) and every write is an upsert by id, so
a task Ray retries after a worker died rewrites the same pages instead of duplicating
them, and a re-run skips files whose pages are all committed — as in the single-process
pipeline (:func:`mmembed.index_documents`), whose report this returns.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from PIL import Image

from mmembed.index import IndexNotFoundError, PageInput, open_backend
from mmembed.index.protocol import IndexBackend
from mmembed.loaders import LoadIssue, load_pages, make_thumbnail
from mmembed.loaders.options import LoaderOptions
from mmembed.loaders.sources import SourceItem, iter_sources
from mmembed.pipeline import IndexReport, is_source_complete
from mmembed.types import EncoderInfo, MMEmbedError

_EMPTY = b""


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


class _Encode:
    """A Ray Data actor holding one encoder (loaded once, on its GPU when it has one)."""

    def __init__(self, model: str, revision: str | None, device: str | None) -> None:
        import mmembed

        self.encoder = mmembed.load_encoder(model, revision=revision, device=device)
        self.info = json.dumps(self.encoder.info.to_dict())

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pages = [i for i, kind in enumerate(batch["kind"]) if kind == "page"]
        images = [Image.open(io.BytesIO(batch["image"][i])).convert("RGB") for i in pages]
        embeddings = self.encoder.encode_images(images) if images else []
        vectors = [_EMPTY] * len(batch["kind"])
        for i, emb in zip(pages, embeddings, strict=True):
            vectors[i] = emb.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()  # (n, dim)
        out = {key: value for key, value in batch.items() if key != "image"}
        out["vectors"] = np.array(vectors, dtype=object)
        out["encoder"] = np.array([self.info] * len(vectors), dtype=object)
        return out


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
    password: str | dict[str, str] | None = None,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    thumbnails: bool = True,
    revision: str | None = None,
    device: str | None = None,
) -> IndexReport:
    """Index ``sources`` into the index at ``index`` (folder or backend URI) on Ray.

    ``address`` is the cluster to join (``"auto"``, ``"ray://head:10001"``); ``None`` uses
    the running Ray or starts a local one. ``encoders`` actors each load ``model`` once
    (``gpus_per_encoder=1`` on a GPU cluster); each holds ``cpus_per_encoder`` logical CPUs,
    so leave CPUs free for the rendering tasks (``encoders * cpus_per_encoder`` below the
    cluster's CPUs, else rendering waits for ever). Bad files are reported in the returned
    :class:`~mmembed.pipeline.IndexReport`, as in the single-process pipeline.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address=address)
    if encoders < 1 or batch_size < 1:
        raise MMEmbedError("encoders and batch_size must be at least 1")
    report = IndexReport()
    listing = LoaderOptions(include=include, exclude=exclude)
    items: list[SourceItem] = []
    for found in iter_sources(sources, listing):
        if isinstance(found, LoadIssue):
            report.issues.append(found)
        else:
            items.append(found)

    try:
        writer: IndexBackend | None = open_backend(index, create=False)
    except IndexNotFoundError:
        writer = None
    stored = writer.sources() if writer is not None else {}
    complete = {(s, h) for s, h in stored.items() if writer is not None and is_source_complete(writer, s, h)}
    if not items:
        if writer is not None:
            writer.close()
        return report

    options = {"dpi": dpi, "max_pixels": max_pixels, "password": password}
    files = ray.data.from_items(
        [{"item": pickle.dumps(item.path if item.path is not None else item)} for item in items],
        override_num_blocks=len(items),
    )
    encoded = files.flat_map(_RenderFile(options, complete, thumbnails)).map_batches(
        _Encode,
        fn_constructor_kwargs={"model": model, "revision": revision, "device": device},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=encoders),
        num_gpus=gpus_per_encoder,
        num_cpus=cpus_per_encoder,
        batch_format="numpy",
    )
    new_hashes: dict[str, str] = {}
    try:
        for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
            pages: list[PageInput] = []
            for i, kind in enumerate(batch["kind"]):
                if kind == "issue":
                    report.issues.append(pickle.loads(batch["issue"][i]))
                elif kind == "unchanged":
                    report.files_unchanged.append(str(batch["source"][i]))
                else:
                    info = EncoderInfo.from_dict(json.loads(batch["encoder"][i]))
                    if writer is None:
                        writer = open_backend(index, info)
                    dim = writer.encoder.dim
                    vectors = np.frombuffer(batch["vectors"][i], dtype=np.float32).reshape(-1, dim)
                    source = str(batch["source"][i])
                    new_hashes[source] = str(batch["content_hash"][i])
                    pages.append(
                        PageInput(
                            embedding=torch.from_numpy(vectors.copy()),  # (n_vectors, dim)
                            source=source,
                            page=int(batch["page"][i]),
                            content_hash=new_hashes[source],
                            metadata=json.loads(batch["metadata"][i]),
                            thumbnail=bytes(batch["thumbnail"][i]) or None,
                            id=str(batch["id"][i]),
                        )
                    )
            if pages:
                assert writer is not None
                writer.encoder.check_compatible(info)
                report.ids += writer.upsert(pages)
                report.pages_indexed += len(pages)
                for p in pages:
                    if p.source not in report.files_indexed:
                        report.files_indexed.append(p.source)
        # Old pages of a changed file go only once its new pages are all committed.
        for source, new_hash in new_hashes.items():
            old = stored.get(source)
            changed = writer is not None and old is not None and old != new_hash
            if changed and writer is not None and is_source_complete(writer, source, new_hash):
                writer.delete(where={"source": source, "content_hash": {"$ne": new_hash}})
                report.files_replaced.append(source)
    finally:
        if writer is not None:
            writer.close()
    return report
