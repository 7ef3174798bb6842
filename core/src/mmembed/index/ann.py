"""HNSW first stage: a graph over a few pooled vectors per page, for indexes too large to scan.

Each page's tokens are pooled into at most :data:`CENTROIDS` k-means centroids; an HNSW graph
(usearch, ``pip install 'mmembed-core[ann]'``) holds them keyed by the page's SQLite row. A
query's tokens each fetch their :data:`NEIGHBOURS` nearest centroids; pages are ranked by the
sum over query tokens of their best centroid similarity (MaxSim over centroids). The caller
narrows the best
``REFINE x candidates`` of them by Hamming MaxSim over their sign-bit codes (stored beside
the vectors, as for the binary first stage) and scores the best ``candidates`` exactly, so
search cost grows with the graph's depth, not the number of pages.

On disk: ``ann/graph.json`` names the graph file and ``covers_row``, the highest page row the
graph holds. The writer extends the graph after batches commit: it writes a new graph file,
fsyncs it, then replaces ``graph.json`` atomically and removes the old file. A kill at any
point leaves ``graph.json`` naming a complete graph; pages past ``covers_row`` (never added,
or added by a killed build) are always scored exactly, so none is ever silently missed.
Deleted pages stay in the graph until rebuilt and are dropped at search (only live rows
count). Compaction moves vectors, not rows, so the graph stays valid.
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..types import MMEmbedError
from . import safe_files
from .format import fsync_dir, write_json_atomic
from .integrity import IndexDamageWarning

ANN_DIR = "ann"
META = "graph.json"
CENTROIDS = 16
"""Pooled vectors per page: k-means centroids of its tokens (all tokens if fewer)."""
NEIGHBOURS = 512
"""Centroids each query token fetches from the graph."""
REFINE = 16
"""The graph proposes ``REFINE x candidates`` pages; Hamming MaxSim over their sign-bit codes
(stored beside the vectors, as for the binary first stage) keeps ``candidates`` for the exact
rerank. Centroids alone rank too coarsely: recall@10 0.55 at 10k pages, 0.97 with this stage
(README, C=200)."""
EXTEND_PAGES = 1000
"""The writer extends the graph once this many pages are past its coverage (the rest are
scanned exactly meanwhile)."""


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError as exc:
        raise MMEmbedError(
            "first_stage='hnsw' needs the usearch package: pip install 'mmembed-core[ann]'"
        ) from exc
    return Index


def pooled(values: torch.Tensor, k: int = CENTROIDS, iterations: int = 4) -> np.ndarray:
    """``(min(k, n), dim)`` float32 k-means centroids of one page's ``(n, dim)`` tokens,
    started from evenly spaced tokens (deterministic). numpy: these matrices are tiny, and
    per-op overhead is what counts."""
    x = values.float().numpy()  # (n, dim)
    if x.shape[0] <= k:
        return x
    centroids = x[np.linspace(0, x.shape[0] - 1, k).astype(np.int64)].copy()  # (k, dim)
    members = np.zeros((x.shape[0], k), dtype=np.float32)  # (n, k) one-hot assignment
    for _ in range(iterations):
        assign = (x @ centroids.T).argmax(axis=1)  # (n,) nearest centroid by dot product
        members[:] = 0
        members[np.arange(x.shape[0]), assign] = 1
        sums = members.T @ x  # (k, dim); a product: half np.add.at's time here
        counts = members.sum(axis=0)[:, None]  # (k, 1)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids).astype(np.float32)
    return centroids


@dataclass(frozen=True)
class GraphState:
    file: str | None  # graph file inside ann/, None before the first build
    covers_row: int  # pages with row <= covers_row are in the graph (if live)
    crc32: int | None = None  # of the graph file's bytes and covers_row (None: written before checksums)


def checksum(data: bytes | bytearray | memoryview, covers_row: int, start: int = 0) -> int:
    """CRC-32 of a graph file's bytes followed by its ``covers_row``: a changed file, another
    index's graph or an edited coverage all fail to match what the writer recorded."""
    return zlib.crc32(str(int(covers_row)).encode(), zlib.crc32(data, start))


def read_state(folder: Path) -> GraphState:
    try:
        with safe_files.opened(folder, f"{ANN_DIR}/{META}") as fd, open(fd, "rb", closefd=False) as fh:
            data = json.loads(fh.read().decode("utf-8"))
        file, covers = data["file"], int(data["covers_row"])
        crc = data.get("crc32")
        crc = None if crc is None else int(crc)
    except FileNotFoundError:
        return GraphState(None, 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MMEmbedError(
            f"{folder / ANN_DIR / META} is damaged ({exc}); delete the {ANN_DIR} folder and the next "
            "write rebuilds the graph (searches scan exactly meanwhile)."
        ) from exc
    if not isinstance(file, str) or "/" in file or file.startswith("."):
        raise MMEmbedError(f"{folder / ANN_DIR / META} names an invalid graph file {file!r}")
    return GraphState(file, covers, crc)


def extend(folder: Path, dim: int, pages: list[tuple[int, torch.Tensor]]) -> GraphState:
    """Add ``(row, (n, dim) vectors)`` pages (rows above the current coverage, ascending)
    to a new graph file and switch ``graph.json`` to it. Caller holds the writer lock."""
    Index = _usearch()
    ann = folder / ANN_DIR
    safe_files.mkdir(folder, ANN_DIR)
    state = usable_state(folder)
    graph = Index(ndim=dim, metric="ip", dtype="f16", multi=True)
    if state.file is not None:
        graph.load(load_graph_bytes(folder, state.file))
    centroids = [pooled(v) for _, v in pages]
    keys = np.repeat(np.array([r for r, _ in pages], dtype=np.uint64), [c.shape[0] for c in centroids])
    if len(keys):
        # One thread: usearch's concurrent add into a multi-key graph (a page's centroids share
        # its key) left about 1 small graph in 7 unable to find a page's own tokens (the
        # contract suite's exact-search test failed 45 of 300 times with 2 threads, 0 with 1).
        graph.add(keys, np.concatenate(centroids), threads=1)
    covers = max([state.covers_row, *(r for r, _ in pages)])
    name = f"graph-{covers:012d}.usearch"
    tmp = f"{ANN_DIR}/.{name}.{os.getpid()}.tmp"
    fd = safe_files.create_new(folder, tmp)  # the graph goes through our descriptor, not a path
    data = graph.save()
    try:
        safe_files.write_all(fd, 0, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    safe_files.rename(folder, tmp, f"{ANN_DIR}/{name}")
    fsync_dir(ann)
    crc = checksum(data, covers)
    write_json_atomic(
        ann / META,
        {"file": name, "covers_row": covers, "centroids": CENTROIDS, "crc32": crc},
        root=folder,
    )
    remove_unreferenced(folder)
    return GraphState(name, covers, crc)


def remove_unreferenced(folder: Path) -> None:
    """Delete graph files ``graph.json`` does not name (a killed build's, replaced ones)."""
    if not safe_files.is_dir(folder, ANN_DIR):
        return
    keep = {META, read_state(folder).file}
    for name in safe_files.listdir(folder, ANN_DIR):
        # a killed build's files, and a killed META swap's .graph.json.<pid>.tmp
        if name not in keep and name.startswith(("graph-", ".graph-", f".{META}.")):
            safe_files.remove(folder, f"{ANN_DIR}/{name}", missing_ok=True)


class GraphDamagedError(MMEmbedError):
    """The graph file ``graph.json`` names is missing or cannot be loaded."""


def open_graph(folder: Path, file: str, crc32: int | None = None, covers_row: int = 0) -> Any:
    """The memory-mapped graph ``ann/<file>``; :class:`GraphDamagedError` when it is missing,
    does not match the checksum ``graph.json`` recorded, or is not a usearch graph (a link is
    refused, never followed)."""
    Index = _usearch()
    if crc32 is not None:
        try:
            found = _file_checksum(folder, f"{ANN_DIR}/{file}", covers_row)
        except FileNotFoundError:
            found = None
        except safe_files.UnsafeIndexFileError as exc:
            raise GraphDamagedError(f"{_graph_problem(folder, file)}: {exc}") from exc
        if found is not None and found != crc32:
            raise GraphDamagedError(
                f"{_graph_problem(folder, file)}: its checksum does not match the one {META} recorded "
                "(the file or its covers_row was changed outside mmembed)"
            )
    try:
        present = safe_files.check_plain(folder, f"{ANN_DIR}/{file}")
    except safe_files.UnsafeIndexFileError as exc:
        raise GraphDamagedError(f"{_graph_problem(folder, file)}: {exc}") from exc
    if not present:
        raise GraphDamagedError(f"{_graph_problem(folder, file)}: the file is missing")
    try:
        graph = Index.restore(str(folder / ANN_DIR / file), view=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise GraphDamagedError(f"{_graph_problem(folder, file)}: {exc}") from exc
    if graph is None:
        raise GraphDamagedError(f"{_graph_problem(folder, file)}: not a usearch graph")
    return graph


def _file_checksum(folder: Path, rel: str, covers_row: int) -> int:
    crc = 0
    with safe_files.opened(folder, rel) as fd:
        while chunk := os.read(fd, 1 << 22):
            crc = zlib.crc32(chunk, crc)
    return checksum(b"", covers_row, crc)


def _graph_problem(folder: Path, file: str) -> str:
    return (
        f"the HNSW graph {folder / ANN_DIR / file} of the index at {folder} cannot be used, so every "
        "page is scanned exactly (correct, slower) until the next write rebuilds it "
        "(`mmembed index --repair --index FOLDER`)"
    )


def usable_state(folder: Path) -> GraphState:
    """:func:`read_state`, or an empty state (the next extension rebuilds the whole graph)
    when the named graph file is missing or damaged. Caller holds the writer lock."""
    state = read_state(folder)
    if state.file is None:
        return state
    try:
        open_graph(folder, state.file, state.crc32, state.covers_row)
    except GraphDamagedError:
        return GraphState(None, 0)
    return state


def load_graph_bytes(folder: Path, file: str) -> bytes:
    """The bytes of ``ann/<file>``, read without following a link."""
    with safe_files.opened(folder, f"{ANN_DIR}/{file}") as fd, open(fd, "rb", closefd=False) as fh:
        return fh.read()


class GraphReader:
    """The memory-mapped graph a search uses, reopened when the writer switched files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: tuple[str, Any] | None = None

    def state_and_graph(self) -> tuple[GraphState, Any | None]:
        """The graph and what it covers; a missing or damaged graph file covers nothing (every
        page is scanned exactly, with a warning) until the next write rebuilds it."""
        state = read_state(self.folder)
        if state.file is None:
            return state, None
        if self._open is None or self._open[0] != state.file:
            try:
                graph = open_graph(self.folder, state.file, state.crc32, state.covers_row)
            except GraphDamagedError as exc:
                warnings.warn(str(exc), IndexDamageWarning, stacklevel=4)
                return GraphState(None, 0), None
            self._open = (state.file, graph)
        return state, self._open[1]

    def clear(self) -> None:
        self._open = None


def candidate_rows(graph: Any, query: torch.Tensor, candidates: int) -> np.ndarray:
    """Rows of the ``candidates`` pages with the best centroid MaxSim for ``(q, dim)`` query
    tokens, among those the graph returns (a token that did not reach a page adds 0 for it:
    standing in the token's weakest match instead measured no better, README)."""
    graph.expansion_search = max(NEIGHBOURS, graph.expansion_search)
    found = graph.search(query.float().numpy(), NEIGHBOURS)
    keys = np.asarray(found.keys).reshape(query.shape[0], -1).astype(np.int64)  # (q, NEIGHBOURS)
    distances = np.asarray(found.distances).reshape(query.shape[0], -1)  # unfilled slots: garbage
    # One query token comes back as Matches (its count is its length), several as BatchMatches.
    counts = np.asarray(getattr(found, "counts", [len(found.keys)])).reshape(-1, 1)
    valid = np.arange(keys.shape[1])[None, :] < counts  # (q, NEIGHBOURS) filled slots
    rows, inverse = np.unique(keys[valid], return_inverse=True)
    best = np.full((query.shape[0], rows.shape[0]), -np.inf, dtype=np.float64)  # (q, pages)
    similarity = 1.0 - distances[valid].astype(np.float64)  # ip distance = 1 - dot; filled slots only
    np.maximum.at(best, (np.nonzero(valid)[0], inverse), similarity)
    score = np.where(np.isfinite(best), best, 0.0).sum(axis=0)  # (pages,) centroid MaxSim
    if rows.shape[0] > candidates:
        rows = rows[np.argpartition(-score, candidates - 1)[:candidates]]
    return np.sort(rows)
