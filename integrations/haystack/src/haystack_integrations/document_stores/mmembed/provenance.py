"""Which model made a query embedding, so a retriever can check it without extra wiring.

A Haystack pipeline passes ``MMEmbedTextEmbedder``'s vectors to ``MMEmbedRetriever`` as plain
lists of floats, which cannot say which model made them. The embedder remembers each query it
embeds here (keyed by the vectors' float32 bytes, a bounded process-wide memo), and the retriever
looks the query up: a query from another model is refused even when ``embedder.encoder`` is not
connected to ``retriever.query_encoder``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch

from mmembed.types import EncoderInfo

MEMO = 4096
"""Query embeddings remembered (the most recent ones; a pipeline hands a query on at once)."""

_lock = threading.Lock()
_made: OrderedDict[bytes, EncoderInfo] = OrderedDict()


def _key(vectors: torch.Tensor) -> bytes:
    rows = vectors.detach().to("cpu", torch.float32).contiguous()  # (n_vectors, dim)
    digest = hashlib.blake2b(str(tuple(rows.shape)).encode(), digest_size=20)
    digest.update(rows.numpy().tobytes())
    return digest.digest()


def remember_query(vectors: list[list[float]], encoder: EncoderInfo) -> None:
    """Record that ``encoder`` made the query ``vectors`` (as the retriever will receive them)."""
    key = _key(torch.tensor(vectors, dtype=torch.float32))
    with _lock:
        _made[key] = encoder
        _made.move_to_end(key)
        while len(_made) > MEMO:
            _made.popitem(last=False)


def query_maker(vectors: torch.Tensor) -> EncoderInfo | None:
    """The encoder that made ``vectors`` ``(n_vectors, dim)`` in this process, if one did."""
    with _lock:
        return _made.get(_key(vectors))


def made_by_mmembed_family(encoder: EncoderInfo) -> bool:
    """Whether ``encoder`` is one of mmembed's model families (a query for its index can only
    come from mmembed), not an embedding made elsewhere and declared to the store."""
    from mmembed.encoders import UnknownModelError, get_family

    try:
        get_family(encoder.family)
    except UnknownModelError:
        return False
    return True
