"""Before / after evaluation on the held-out split, with ``mmembed eval``'s own code.

The held-out pages are encoded by the model under test into a temporary index (deleted
afterwards) and the held-out queries searched against it with a :class:`~mmembed.Retriever`,
then measured by :func:`mmembed.evaluate.evaluate` (ir-measures). The same path runs for the
untrained and the trained model, so the two columns compare like with like.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence

from ..encoders.base import Encoder
from ..evaluate import EvalReport, evaluate
from ..index.local import LocalIndex
from ..index.protocol import PageInput
from ..retrieve import Retriever
from ..types import PageRecord
from .pages import PageImages
from .pairs import TrainPair

METRICS = ("R@1", "R@5", "nDCG@5", "nDCG@10", "RR@10")


def evaluate_held_out(
    encoder: Encoder,
    held_out: Sequence[TrainPair],
    records: Mapping[str, PageRecord],
    images: PageImages,
    *,
    name: str,
    batch_size: int = 8,
) -> EvalReport:
    """Recall / nDCG / MRR of ``held_out`` queries over the held-out pages (see module docstring)."""
    pages = sorted({p.page_id for p in held_out})
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_text: dict[str, str] = {}
    for pair in held_out:
        qid = by_text.setdefault(pair.query.strip(), f"q{len(by_text)}")
        queries[qid] = pair.query
        qrels.setdefault(qid, {})[pair.page_id] = 1
    with tempfile.TemporaryDirectory(prefix="mmembed-heldout-") as folder:
        index = LocalIndex(folder, encoder.info, keep_thumbnails=False, storage="float32")
        try:
            for start in range(0, len(pages), batch_size):
                chunk = pages[start : start + batch_size]
                vectors = encoder.encode_images([images[p] for p in chunk])
                index.add(
                    [
                        PageInput(v, records[p].source, records[p].page, records[p].content_hash, id=p)
                        for p, v in zip(chunk, vectors, strict=True)
                    ]
                )
            return evaluate(
                Retriever(index, encoder, allow_empty=True),
                queries,
                qrels,
                k=min(100, len(pages)),
                doc_ids="id",
                metrics=METRICS,
                name=name,
            )
        finally:
            index.close()
