"""Batches drawn from one source at a time (Nomic: +2.9 NDCG@5 on ViDoRe v2), or shuffled.

In-batch negatives from the same document are harder than pages of unrelated files: the
model must tell *pages* apart, not file types or layouts. A source is a file, its folder or
a metadata value the user names. Batches are shuffled across sources; a source with fewer
pairs than a batch shares its batch with the next source in line. A page never appears twice
as a positive in one batch (it would be its own negative). Deterministic for a seed and
epoch, so a resumed run draws the batches the interrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..types import MMEmbedError, PageRecord
from .settings import SAMPLINGS, Sampling


def source_key_error(source_key: str) -> str | None:
    """Why ``source_key`` is not a source key, or ``None`` when it is one."""
    if source_key in ("file", "folder") or (
        source_key.startswith("metadata:") and len(source_key) > len("metadata:")
    ):
        return None
    return f"source key must be 'file', 'folder' or 'metadata:<key>', got {source_key!r}"


def missing_metadata_key(source_key: str, records: Sequence[PageRecord]) -> str | None:
    """Why ``metadata:<key>`` cannot group ``records`` (no record has the key: every page
    would be one source), or ``None``."""
    if not source_key.startswith("metadata:"):
        return None
    key = source_key.removeprefix("metadata:")
    if any(key in r.metadata for r in records):
        return None
    found = sorted({k for r in records for k in r.metadata if not k.startswith("_")})  # not internal keys
    have = f"the keys they have: {', '.join(found[:10])}" if found else "they have no metadata"
    return (
        f"--source-key {source_key}: no training page has the metadata key {key!r} ({have}), so every page "
        "would be one source; name a key the pages have (set at indexing with metadata=...), or use "
        "--source-key file"
    )


def source_of(record: PageRecord, source_key: str) -> str:
    """A page's source under ``source_key``: ``file`` (the file), ``folder`` (its folder) or
    ``metadata:<key>`` (a metadata value; pages without it share one group)."""
    if source_key == "file":
        return record.source
    if source_key == "folder":
        return str(Path(record.source).parent)
    if source_key_error(source_key) is None:
        return f"{source_key}={record.metadata.get(source_key.removeprefix('metadata:'))!r}"
    raise MMEmbedError(str(source_key_error(source_key)))


class SourceBatchSampler:
    """Yields lists of example indices (see module docstring); a torch ``batch_sampler``."""

    def __init__(
        self,
        sources: Sequence[str],
        pages: Sequence[str],
        batch_size: int,
        *,
        sampling: Sampling = "same-source",
        seed: int = 0,
        single: bool = False,
    ) -> None:
        """``single``: batches of one pair (only after out-of-memory halving, in a run with hard
        negatives: they are then the query's only negatives)."""
        if batch_size < (1 if single else 2):
            raise MMEmbedError(f"batch size must be at least 2 (in-batch negatives), got {batch_size}")
        if sampling not in SAMPLINGS:
            raise MMEmbedError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if len(sources) != len(pages):
            raise ValueError("one source and one page per example")
        self.sources = list(sources)
        self.pages = list(pages)
        self.batch_size = batch_size
        self.sampling = sampling
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._batches(0))

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches(self.epoch)

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.sampling == "shuffle":
            order = list(range(len(self.pages)))
            rng.shuffle(order)
            runs = [order]
        else:
            groups: dict[str, list[int]] = {}
            for i, source in enumerate(self.sources):
                groups.setdefault(source, []).append(i)
            runs = [groups[s] for s in sorted(groups)]
            for run in runs:
                rng.shuffle(run)
            rng.shuffle(runs)
        batches = self._pack([i for run in runs for i in run])
        if self.sampling == "same-source":
            rng.shuffle(batches)
        return batches

    def _pack(self, order: list[int]) -> list[list[int]]:
        """Examples in ``order`` into batches, each taking the next examples whose page it
        does not hold yet (the others wait for the next batch). A last lone example joins an
        earlier batch that lacks its page; only when every batch holds its page is it left out."""
        batches: list[list[int]] = []
        remaining = order
        while remaining:
            batch: list[int] = []
            seen: set[str] = set()
            rest: list[int] = []
            for i in remaining:
                if len(batch) < self.batch_size and self.pages[i] not in seen:
                    batch.append(i)
                    seen.add(self.pages[i])
                else:
                    rest.append(i)
            if len(batch) >= min(2, self.batch_size):
                batches.append(batch)
            else:  # a lone example joins a batch without its page (one batch grows by one)
                home = next(
                    (b for b in batches if self.pages[batch[0]] not in {self.pages[i] for i in b}), None
                )
                if home is not None:
                    home.append(batch[0])
            remaining = rest
        return batches
