"""PLAID first stage, on disk: token centroids, residual codes and centroid -> page lists.

Long because it holds the whole build (k-means training, residual coding, the inverted
lists) and the crash-safe file switch with its reader; the search kernels are in
:mod:`.plaid_search`.

The method of ColBERTv2 / PLAID (Santhanam et al. 2022), written here with numpy: k-means
centroids over a sample of the stored token vectors; every token is stored as the id of its
nearest centroid plus its residual (vector - centroid) quantised to :data:`NBITS` bits per
dimension against per-dimension bucket cutoffs; an inverted list maps each centroid to the
pages holding a token assigned to it. Searches probe the centroids nearest each query token,
score the pages found by centroid interaction, and rescore the best with the decompressed
residuals before the exact rerank (:mod:`.plaid_search`).

On disk: ``plaid/plaid.json`` names one file ``plaid/plaid-<covers_row>.bin`` holding every
array (its layout, ``covers_row`` — the highest page row it codes — and the CRC-32 of the
file's bytes are in ``plaid.json``). A build writes a new file, fsyncs it, renames it into
place, then replaces ``plaid.json`` atomically and removes the old file, so a kill at any
point leaves ``plaid.json`` naming a complete file. Pages past ``covers_row`` are scored
exactly by searches until the writer covers them. New pages are assigned to the existing
centroids; the centroids are re-trained on every page once the covered pages reach
:data:`RETRAIN_GROWTH` times the pages they were trained on (the distribution they model may
have moved). Deleted pages stay in the file (searches only count live rows) until then.
Compaction moves vectors, not rows, so the file stays valid.
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..types import MMEmbedError
from . import safe_files
from .format import fsync_dir, write_json_atomic
from .integrity import IndexDamageWarning

PLAID_DIR = "plaid"
META = "plaid.json"
NBITS = 2
"""Bits per dimension of a token's residual code: at dim 128, 32 bytes + a 4-byte centroid id
per token (36 KB per 1,000-token page, against 256 KB of float16)."""
SAMPLE_TOKENS = 1 << 16
"""Tokens the k-means centroids are trained on (a uniform sample of every stored token)."""
KMEANS_ITERATIONS = 8
CENTROIDS_PER_ROOT_TOKEN = 2.0
"""Centroid count: the power of two nearest ``CENTROIDS_PER_ROOT_TOKEN * sqrt(tokens)``
(ColBERTv2 uses 16; measured on the scale corpus, see docs/first-stages.md), between
:data:`MIN_CENTROIDS` and :data:`MAX_CENTROIDS` and never more than the tokens sampled."""
MIN_CENTROIDS = 16
MAX_CENTROIDS = 1 << 15
RETRAIN_GROWTH = 4
"""Centroids are re-trained (every page re-coded) once the covered pages reach this many times
the pages they were trained on; pages added before that are assigned to the existing ones."""
CHUNK_TOKENS = 1 << 16
"""Tokens coded per step of a build: bounds its (tokens x centroids) temporary."""
_ALIGN = 64


def centroid_count(tokens: int) -> int:
    wanted = CENTROIDS_PER_ROOT_TOKEN * float(np.sqrt(max(tokens, 1)))
    power = 1 << max(0, round(np.log2(max(wanted, 1.0))))
    return int(min(max(power, MIN_CENTROIDS), MAX_CENTROIDS, max(1, min(tokens, SAMPLE_TOKENS))))


# ---------------------------------------------------------------------------- training and coding


@dataclass(frozen=True)
class Codec:
    """Centroids and the residual quantiser of one training."""

    centroids: np.ndarray  # (K, dim) float32
    cutoffs: np.ndarray  # (dim, 2**NBITS - 1) float32 bucket boundaries per dimension
    weights: np.ndarray  # (dim, 2**NBITS) float32 value each bucket decodes to

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])


def code_bytes(dim: int, nbits: int = NBITS) -> int:
    """Bytes of one token's packed residual code (dimensions padded to a whole byte)."""
    return (dim * nbits + 7) // 8


def train(sample: np.ndarray, k: int, seed: int = 0) -> Codec:
    """k-means (Euclidean, ``KMEANS_ITERATIONS`` Lloyd steps) over ``(n, dim)`` float32 tokens,
    then the per-dimension quantiles of the residuals as the bucket cutoffs and values."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))  # (n, dim)
    k = max(1, min(k, x.shape[0]))
    c = x[torch.from_numpy(rng.choice(x.shape[0], k, replace=False))].clone()  # (k, dim)
    for _ in range(KMEANS_ITERATIONS):
        sums, counts = _cluster_sums(x.numpy(), assign(x, c).numpy(), k)  # (k, dim), (k, 1)
        empty = counts[:, 0] == 0
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        if bool(empty.any()):  # an empty cluster restarts at a random token
            c[empty] = x[torch.from_numpy(rng.choice(x.shape[0], int(empty.sum()), replace=True))]
    residual = (x - c[assign(x, c)]).numpy()  # (n, dim)
    levels = 1 << NBITS
    cutoffs = np.quantile(residual, np.arange(1, levels) / levels, axis=0).T  # (dim, levels - 1)
    weights = np.quantile(residual, (np.arange(levels) + 0.5) / levels, axis=0).T  # (dim, levels)
    return Codec(
        np.ascontiguousarray(c.numpy(), dtype=np.float32),
        np.ascontiguousarray(cutoffs, dtype=np.float32),
        np.ascontiguousarray(weights, dtype=np.float32),
    )


def _cluster_sums(x: np.ndarray, assign: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums and counts of ``(n, dim)`` rows (sorted then reduced: torch's
    ``index_add_`` took ~0.1 s even on a few rows here)."""
    order = np.argsort(assign, kind="stable")
    ordered = assign[order]
    counts = np.bincount(assign, minlength=k).astype(np.float32)[:, None]  # (k, 1)
    sums = np.zeros((k, x.shape[1]), dtype=np.float32)
    present = np.flatnonzero(counts[:, 0] > 0)
    starts = np.searchsorted(ordered, present)
    sums[present] = np.add.reduceat(x[order], starts, axis=0)
    return torch.from_numpy(sums), torch.from_numpy(counts)


def nearest(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(n,)`` index of the nearest centroid (Euclidean) of each ``(n, dim)`` row, in chunks.
    numpy, not torch: on a loaded 2-core machine torch's small ops cost ~30-100 ms each."""
    xs, cs = x.numpy(), centroids.numpy()
    half_norms = 0.5 * np.einsum("kd,kd->k", cs, cs)  # (k,)
    out = np.empty(xs.shape[0], dtype=np.int64)
    for a in range(0, xs.shape[0], CHUNK_TOKENS):
        block = xs[a : a + CHUNK_TOKENS]  # (b, dim)
        out[a : a + block.shape[0]] = (block @ cs.T - half_norms).argmax(axis=1)
    return torch.from_numpy(out)


GROUPED_FROM = 512
"""From this many centroids on, tokens are assigned through centroid groups (:func:`assign`)."""
NEIGHBOUR_GROUPS = 4
"""Groups whose centroids a token is compared with: its nearest group's nearest groups."""


def assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(n,)`` centroid of each ``(n, dim)`` token: the nearest one (:func:`nearest`) for a few
    centroids; from :data:`GROUPED_FROM` on, the nearest among the members of the
    :data:`NEIGHBOUR_GROUPS` groups nearest the token's group (``sqrt(K)`` k-means groups of
    the centroids). That compares each token with ``~sqrt(K) x 5`` vectors instead of ``K``
    (K=4096: ~12x fewer products; a 2-core build was bound by this product) and mostly finds
    the same centroid; a token given a near-nearest one just keeps a slightly larger residual."""
    k = int(centroids.shape[0])
    if k < GROUPED_FROM:
        return nearest(x, centroids)
    groups = _groups(centroids.numpy())
    out = np.empty(x.shape[0], dtype=np.int64)
    group_of = nearest(x, torch.from_numpy(groups.centroids)).numpy()  # (n,)
    order = np.argsort(group_of, kind="stable")
    bounds = np.searchsorted(group_of[order], np.arange(groups.centroids.shape[0] + 1))
    xs, cs = x.numpy(), centroids.numpy()
    for g in range(groups.centroids.shape[0]):
        mine = order[bounds[g] : bounds[g + 1]]
        if mine.shape[0]:
            members = groups.members[g]
            local = nearest(torch.from_numpy(xs[mine]), torch.from_numpy(cs[members])).numpy()
            out[mine] = members[local]
    return torch.from_numpy(out)


@dataclass(frozen=True)
class _Groups:
    centroids: np.ndarray  # (G, dim) group centres
    members: list[np.ndarray]  # per group: the centroids of it and its nearest groups


def _groups(centroids: np.ndarray) -> _Groups:
    key = (centroids.shape, zlib.crc32(centroids.tobytes()))
    cached = _GROUPS.get(key)
    if cached is not None:
        return cached
    n_groups = max(2, int(np.sqrt(centroids.shape[0])))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.ascontiguousarray(centroids))
    g = x[torch.from_numpy(rng.choice(x.shape[0], n_groups, replace=False))].clone()
    for _ in range(KMEANS_ITERATIONS):
        sums, counts = _cluster_sums(centroids, nearest(x, g).numpy(), n_groups)
        g = torch.where(counts > 0, sums / counts.clamp(min=1), g)
    of = nearest(x, g).numpy()  # (K,) group of each centroid
    gn = g.numpy()
    near = np.argsort(-(gn @ gn.T - 0.5 * (gn * gn).sum(axis=1)[None, :]), axis=1)[:, :NEIGHBOUR_GROUPS]
    members = [np.flatnonzero(np.isin(of, near[i])) for i in range(n_groups)]
    groups = _Groups(np.ascontiguousarray(gn), members)
    _GROUPS.clear()  # one codec at a time is in use
    _GROUPS[key] = groups
    return groups


_GROUPS: dict[tuple[tuple[int, ...], int], _Groups] = {}


def encode(codec: Codec, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, residuals)`` of ``(n, dim)`` float32 tokens: ``(n,)`` int32 centroid ids and
    ``(n, code_bytes(dim))`` uint8 packed bucket indices (first dimension in the high bits)."""
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    codes = assign(x, torch.from_numpy(codec.centroids))  # (n,)
    residual = x.numpy() - codec.centroids[codes.numpy()]  # (n, dim)
    buckets = (residual[:, :, None] > codec.cutoffs[None, :, :]).sum(axis=2).astype(np.uint8)  # (n, dim)
    return codes.numpy().astype(np.int32), pack(buckets)


def pack(buckets: np.ndarray) -> np.ndarray:
    """``(n, dim)`` bucket indices < 2**NBITS -> ``(n, code_bytes(dim))`` uint8."""
    per = 8 // NBITS
    n, dim = buckets.shape
    padded = np.zeros((n, code_bytes(dim) * per), dtype=np.uint8)
    padded[:, :dim] = buckets
    grouped = padded.reshape(n, -1, per)  # (n, bytes, per)
    shifts = (NBITS * np.arange(per - 1, -1, -1)).astype(np.uint8)  # first value highest
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)


def unpack(packed: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of :func:`pack`: ``(n, dim)`` uint8 bucket indices."""
    per = 8 // NBITS
    shifts = (NBITS * np.arange(per - 1, -1, -1)).astype(np.uint8)
    values = (packed[:, :, None] >> shifts) & np.uint8((1 << NBITS) - 1)  # (n, bytes, per)
    return values.reshape(packed.shape[0], -1)[:, :dim]


def decode(codec: Codec, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """``(n, dim)`` float32 approximate tokens: centroid + decoded residual, through a table of
    what each byte of a code decodes to (one gather per byte instead of per dimension)."""
    table = _byte_table(codec)  # (code bytes, 256, 8 // NBITS)
    n, width = residuals.shape
    values = table[np.arange(width)[None, :], residuals]  # (n, code bytes, 8 // NBITS)
    out = values.reshape(n, -1)[:, : codec.dim]
    out += codec.centroids[codes]
    return out


def byte_table(codec: Codec) -> np.ndarray:
    """``(code bytes, 256, 8 // NBITS)`` float32: the residual values each byte decodes to."""
    return _byte_table(codec)


def _byte_table(codec: Codec) -> np.ndarray:
    key = id(codec.weights)
    cached = _TABLES.get(key)
    if cached is not None and cached[0] is codec.weights:
        return cached[1]
    per = 8 // NBITS
    width = code_bytes(codec.dim)
    every = np.arange(256, dtype=np.uint8)[:, None]  # (256, 1) every byte
    buckets = unpack(every, per)  # (256, per) the buckets a byte holds
    weights = np.zeros((width * per, 1 << NBITS), dtype=np.float32)
    weights[: codec.dim] = codec.weights  # padded dimensions decode to 0
    dims = np.arange(width * per).reshape(width, per)  # (width, per) dimension of each slot
    table = weights[dims[:, None, :], buckets[None, :, :]]  # (width, 256, per)
    _TABLES.clear()  # one codec at a time is in use
    _TABLES[key] = (codec.weights, np.ascontiguousarray(table))
    return _TABLES[key][1]


_TABLES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


# ---------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class PlaidState:
    file: str | None  # file inside plaid/, None before the first build
    covers_row: int  # pages with row <= covers_row are coded (if live)
    trained_pages: int = 0  # pages the centroids were trained on
    layout: dict[str, Any] | None = None  # array name -> [offset, dtype, shape]
    crc32: int | None = None  # of the file and its description (:func:`description_checksum`)


ARRAYS = (
    "centroids",  # (K, dim) float32
    "cutoffs",  # (dim, 2**NBITS - 1) float32
    "weights",  # (dim, 2**NBITS) float32
    "rows",  # (P,) int64 page rows, ascending
    "tok_off",  # (P + 1,) int64 first token of each page
    "page_cent_off",  # (P + 1,) int64 first entry of each page in page_cents
    "page_cents",  # (U,) int32 distinct centroids of each page's tokens, ascending
    "ivf_off",  # (K + 1,) int64 first entry of each centroid in ivf
    "ivf",  # (U,) int32 pages (indices into rows) holding a token of each centroid, ascending
    "codes",  # (T,) int32 centroid of each token
    "residuals",  # (T, code_bytes(dim)) uint8 packed residual buckets
)


def read_state(folder: Path) -> PlaidState:
    try:
        with safe_files.opened(folder, f"{PLAID_DIR}/{META}") as fd, open(fd, "rb", closefd=False) as fh:
            data = json.loads(fh.read().decode("utf-8"))
        file, covers, trained = data["file"], int(data["covers_row"]), int(data["trained_pages"])
        layout, crc = data["layout"], int(data["crc32"])
        if not isinstance(layout, dict) or set(layout) != set(ARRAYS):
            raise ValueError("its layout does not list the PLAID arrays")
    except FileNotFoundError:
        return PlaidState(None, 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MMEmbedError(
            f"{folder / PLAID_DIR / META} is damaged ({exc}); delete the {PLAID_DIR} folder and the next "
            "write (or `mmembed index --repair --index FOLDER`) rebuilds it (searches scan exactly meanwhile)."
        ) from exc
    if not isinstance(file, str) or "/" in file or file.startswith("."):
        raise MMEmbedError(f"{folder / PLAID_DIR / META} names an invalid file {file!r}")
    return PlaidState(file, covers, trained, layout, crc)


def description_checksum(file_crc: int, layout: dict[str, Any], covers_row: int, trained_pages: int) -> int:
    """CRC-32 of the file's bytes followed by its description in ``plaid.json``: a changed
    file, layout or coverage all fail to match what the writer recorded (a layout pointing
    the arrays elsewhere in the file would feed the kernels out-of-range ids)."""
    described = json.dumps([layout, int(covers_row), int(trained_pages)], sort_keys=True)
    return zlib.crc32(described.encode(), file_crc)


class PlaidDamagedError(MMEmbedError):
    """The file ``plaid.json`` names is missing, changed, or does not fit its layout."""


@dataclass(frozen=True)
class PlaidArrays:
    """The memory-mapped arrays of one PLAID file (see :data:`ARRAYS`)."""

    codec: Codec
    rows: np.ndarray
    tok_off: np.ndarray
    page_cent_off: np.ndarray
    page_cents: np.ndarray
    ivf_off: np.ndarray
    ivf: np.ndarray
    codes: np.ndarray
    residuals: np.ndarray


def open_arrays(folder: Path, state: PlaidState, *, verify: bool = True) -> PlaidArrays:
    """Map the arrays of ``state``'s file (a link is refused, never followed); with ``verify``
    its bytes are checked against the recorded CRC-32 first. :class:`PlaidDamagedError` if unusable."""
    assert state.file is not None and state.layout is not None
    rel = f"{PLAID_DIR}/{state.file}"
    problem = (
        f"the PLAID file {folder / rel} of the index at {folder} cannot be used, so every page is "
        "scanned exactly (correct, slower) until the next write rebuilds it "
        "(`mmembed index --repair --index FOLDER`)"
    )
    try:
        if not safe_files.check_plain(folder, rel):
            raise PlaidDamagedError(f"{problem}: the file is missing")
        if verify and state.crc32 != description_checksum(
            _file_crc(folder, rel), state.layout, state.covers_row, state.trained_pages
        ):
            raise PlaidDamagedError(f"{problem}: its checksum does not match the one {META} recorded")
        size = safe_files.size(folder, rel)
        arrays = {}
        for name in ARRAYS:
            offset, dtype, shape = state.layout[name]
            need = int(offset) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if need > size:
                raise PlaidDamagedError(f"{problem}: it is shorter than its layout")
            arrays[name] = _map(folder, rel, np.dtype(dtype), tuple(int(s) for s in shape), int(offset))
    except safe_files.UnsafeIndexFileError as exc:
        raise PlaidDamagedError(f"{problem}: {exc}") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise PlaidDamagedError(f"{problem}: {exc}") from exc
    codec = Codec(arrays.pop("centroids"), arrays.pop("cutoffs"), arrays.pop("weights"))
    return PlaidArrays(codec=codec, **arrays)


def _map(folder: Path, rel: str, dtype: np.dtype[Any], shape: tuple[int, ...], offset: int) -> np.ndarray:
    # Copy-on-write like the segment maps: writable arrays (nothing writes through them), so the
    # compiled kernels see one array type.
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return np.empty(shape, dtype=dtype)
    fd = safe_files.open_file(folder, rel)
    with open(fd, "rb", closefd=True) as fh:
        return np.memmap(fh, dtype=dtype, mode="c", shape=shape, offset=offset)


def _file_crc(folder: Path, rel: str) -> int:
    crc = 0
    with safe_files.opened(folder, rel) as fd:
        while chunk := os.read(fd, 1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def usable_state(folder: Path) -> PlaidState:
    """:func:`read_state`, or an empty state (the next build codes every page) when the named
    file is missing or damaged. Caller holds the writer lock."""
    try:
        state = read_state(folder)
    except MMEmbedError:
        return PlaidState(None, 0)
    if state.file is None:
        return state
    try:
        open_arrays(folder, state)
    except PlaidDamagedError:
        return PlaidState(None, 0)
    return state


def damaged(folder: Path) -> bool:
    """Whether ``plaid.json`` is unreadable or names a file that is missing or fails its
    checksum (reads the whole file). Caller holds the writer lock."""
    try:
        state = read_state(folder)
    except MMEmbedError:
        return True
    return state.file is not None and usable_state(folder).file is None


class PlaidReader:
    """The memory-mapped PLAID file a search uses, reopened when the writer switched files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._open: tuple[str, PlaidArrays] | None = None

    def state_and_arrays(self) -> tuple[PlaidState, PlaidArrays | None]:
        """The arrays and what they cover; a damaged file covers nothing (every page is
        scanned exactly, with a warning) until the next write rebuilds it."""
        try:
            state = read_state(self.folder)
        except MMEmbedError as exc:
            warnings.warn(str(exc), IndexDamageWarning, stacklevel=4)
            return PlaidState(None, 0), None
        if state.file is None:
            return state, None
        if self._open is None or self._open[0] != state.file:
            try:
                arrays = open_arrays(self.folder, state)
            except PlaidDamagedError as exc:
                warnings.warn(str(exc), IndexDamageWarning, stacklevel=4)
                return PlaidState(None, 0), None
            self._open = (state.file, arrays)
        return state, self._open[1]

    def clear(self) -> None:
        self._open = None


# ---------------------------------------------------------------------------- building


Page = tuple[int, torch.Tensor]
"""``(row, (n, dim) vectors)`` of one stored page."""


def extend(
    folder: Path, dim: int, waiting: Sequence[Page], everything: Callable[[], Sequence[Page]] | None = None
) -> int:
    """Cover the ``waiting`` pages (rows above the current coverage, ascending): assign them to
    the existing centroids, or — before the first build, after a damaged file, or once the
    covered pages reach ``RETRAIN_GROWTH`` x the trained ones — train new centroids and code
    ``everything`` (every live page, ascending rows). Writes a new file and switches
    ``plaid.json`` to it; returns how many pages were coded. Caller holds the writer lock."""
    safe_files.mkdir(folder, PLAID_DIR)
    state = usable_state(folder)
    old = None if state.file is None else open_arrays(folder, state, verify=False)
    covered = 0 if old is None else int(old.rows.shape[0])
    retrain = old is None or covered + len(waiting) >= RETRAIN_GROWTH * max(state.trained_pages, 1)
    if retrain:
        pages = list(everything()) if everything is not None else list(waiting)
        codec = train(_sample(pages, dim), centroid_count(sum(int(v.shape[0]) for _, v in pages)))
        kept: PlaidArrays | None = None
        trained = len(pages)
    else:
        assert old is not None
        pages, codec, kept, trained = list(waiting), old.codec, old, state.trained_pages
    if not pages and kept is None:
        return 0
    covers = max([state.covers_row, *(r for r, _ in pages)])
    name = f"plaid-{covers:012d}.bin"
    layout, file_crc = _write(folder, name, codec, kept, pages)
    write_json_atomic(
        folder / PLAID_DIR / META,
        {
            "file": name,
            "covers_row": covers,
            "trained_pages": trained,
            "nbits": NBITS,
            "layout": layout,
            "crc32": description_checksum(file_crc, layout, covers, trained),
        },
        root=folder,
    )
    remove_unreferenced(folder)
    return len(pages)


def _sample(pages: Sequence[Page], dim: int, seed: int = 0) -> np.ndarray:
    """``(<= SAMPLE_TOKENS, dim)`` float32 tokens drawn uniformly from ``pages``."""
    counts = np.array([int(v.shape[0]) for _, v in pages], dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((0, dim), dtype=np.float32)
    picked = np.sort(np.random.default_rng(seed).choice(total, min(total, SAMPLE_TOKENS), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    page_of = np.searchsorted(starts, picked, side="right") - 1
    out = np.empty((picked.shape[0], dim), dtype=np.float32)
    for p in np.unique(page_of):
        mine = page_of == p
        out[mine] = pages[int(p)][1].float().numpy()[picked[mine] - starts[p]]
    return out


def _coded(codec: Codec, pages: Sequence[Page]) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
    """``(codes, residuals, tokens per page)`` of ``pages``, a few thousand tokens at a time."""
    batch: list[np.ndarray] = []
    sizes: list[int] = []
    for _, vectors in pages:
        batch.append(vectors.float().numpy())
        sizes.append(int(vectors.shape[0]))
        if sum(sizes) >= CHUNK_TOKENS:
            yield (*encode(codec, np.concatenate(batch)), sizes)
            batch, sizes = [], []
    if sizes:
        yield (*encode(codec, np.concatenate(batch) if batch else np.zeros((0, codec.dim))), sizes)


def _write(
    folder: Path, name: str, codec: Codec, kept: PlaidArrays | None, pages: Sequence[Page]
) -> tuple[dict[str, Any], int]:
    """Write the file ``plaid/<name>`` durably: ``kept``'s pages (their codes copied) then
    ``pages`` coded with ``codec``. Returns ``(layout, crc32)``."""
    dim, k = codec.dim, int(codec.centroids.shape[0])
    new_codes, new_residuals, new_sizes = [], [], []
    for codes, residuals, sizes in _coded(codec, pages):
        new_codes.append(codes)
        new_residuals.append(residuals)
        new_sizes += sizes
    codes = np.concatenate([kept.codes if kept is not None else np.zeros(0, np.int32), *new_codes])
    residuals = np.concatenate(
        [kept.residuals if kept is not None else np.zeros((0, code_bytes(dim)), np.uint8), *new_residuals]
    )
    rows = np.array([r for r, _ in pages], dtype=np.int64)
    counts = np.array(new_sizes, dtype=np.int64)
    if kept is not None:
        rows = np.concatenate([kept.rows, rows])
        counts = np.concatenate([np.diff(kept.tok_off), counts])
    tok_off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # Distinct centroids of each page: sort (page, centroid) pairs, drop repeats.
    page_of_token = np.repeat(np.arange(rows.shape[0], dtype=np.int64), counts)
    pairs = np.unique(page_of_token * k + codes.astype(np.int64))  # sorted by page, then centroid
    pair_page, page_cents = pairs // k, (pairs % k).astype(np.int32)
    page_cent_off = np.searchsorted(pair_page, np.arange(rows.shape[0] + 1)).astype(np.int64)
    by_centroid = np.argsort(page_cents, kind="stable")  # pages stay ascending within a centroid
    ivf = pair_page[by_centroid].astype(np.int32)
    ivf_off = np.searchsorted(page_cents[by_centroid], np.arange(k + 1)).astype(np.int64)
    arrays = {
        "centroids": codec.centroids,
        "cutoffs": codec.cutoffs,
        "weights": codec.weights,
        "rows": rows,
        "tok_off": tok_off,
        "page_cent_off": page_cent_off,
        "page_cents": page_cents,
        "ivf_off": ivf_off,
        "ivf": ivf,
        "codes": codes,
        "residuals": residuals,
    }
    layout: dict[str, Any] = {}
    tmp = f"{PLAID_DIR}/.{name}.{os.getpid()}.tmp"
    fd = safe_files.create_new(folder, tmp)
    crc, offset = 0, 0
    try:
        for key in ARRAYS:
            array = np.ascontiguousarray(arrays[key])
            pad = (-offset) % _ALIGN
            if pad:
                safe_files.write_all(fd, offset, bytes(pad))
                crc, offset = zlib.crc32(bytes(pad), crc), offset + pad
            layout[key] = [offset, array.dtype.str, list(array.shape)]
            data = array.reshape(-1).view(np.uint8).data if array.size else memoryview(b"")
            safe_files.write_all(fd, offset, data)
            crc, offset = zlib.crc32(data, crc), offset + array.nbytes
        os.fsync(fd)
    finally:
        os.close(fd)
    safe_files.rename(folder, tmp, f"{PLAID_DIR}/{name}")
    fsync_dir(folder / PLAID_DIR)
    return layout, crc


def remove_unreferenced(folder: Path) -> None:
    """Delete PLAID files ``plaid.json`` does not name (a killed build's, replaced ones)."""
    if not safe_files.is_dir(folder, PLAID_DIR):
        return
    try:
        keep = {META, read_state(folder).file}
    except MMEmbedError:
        keep = {META}
    for name in safe_files.listdir(folder, PLAID_DIR):
        # a killed build's files, and a killed META swap's .plaid.json.<pid>.tmp
        if name not in keep and name.startswith(("plaid-", ".plaid-", f".{META}.")):
            safe_files.remove(folder, f"{PLAID_DIR}/{name}", missing_ok=True)
