"""The text side of a Qdrant-backed index: each page's text as a named sparse vector.

Qdrant scores a sparse vector by the dot product with the query's, and with
``Modifier.IDF`` multiplies each query term by the collection's inverse document frequency
``ln(1 + (N - n + 0.5) / (n + 0.5))`` (``N`` pages with text, ``n`` of them holding the term),
computed by the engine at query time. The term weights stored per page are computed here,
client-side: BM25's saturated term frequency ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len /
avg_len))`` with ``k1 = 1.2``, ``b = 0.75`` and a fixed ``avg_len`` (a page cannot know the
collection's average when it is written; Qdrant's own BM25 model does the same). Together:
BM25, scored by the engine.

Words are cut like the embedded index's FTS5 ``unicode61`` tokenizer with diacritics
removed: runs of letters and digits (``_`` and punctuation separate), lower-cased, accents
dropped (``Café`` = ``cafe``). A term's sparse index is a stable 32-bit hash of the word.

>>> query_vector("Part X-200, part x-200!")[0] == query_vector("part x 200")[0]
True
>>> terms("Ça coûte 20 €_net")
['ca', 'coute', '20', 'net']
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter

from mmembed.index.text import MAX_QUERY_TERMS

TEXT = "text"
"""The named sparse vector holding a page's text."""
TOKENIZER = "unicode61"
"""The only tokenizer the Qdrant backends have (the embedded index also has ``trigram``)."""
K1, B, AVG_LEN = 1.2, 0.75, 256.0

_WORD = re.compile(r"[^\W_]+")


def terms(text: str) -> list[str]:
    """The words of ``text`` as the embedded index's ``unicode61`` tokenizer (diacritics
    removed) cuts them, in order."""
    out: list[str] = []
    for word in _WORD.findall(text):
        plain = "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))
        out.extend(_WORD.findall(plain.lower()))  # (a dropped mark never joins two words)
    return out


def term_id(term: str) -> int:
    """A term's sparse-vector index: the first 32 bits of its BLAKE2b hash (stable across
    processes and machines; two words share an index with odds about 1 in 4 billion per pair)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "big")


def document_vector(text: str) -> tuple[list[int], list[float]] | None:
    """``(indices, values)`` of a page's text: BM25's saturated term frequency per term;
    ``None`` when the text has no word (the page then has no text side)."""
    words = terms(text)
    if not words:
        return None
    norm = K1 * (1.0 - B + B * len(words) / AVG_LEN)
    weights: dict[int, float] = {}
    for term, tf in Counter(words).items():
        index = term_id(term)
        weights[index] = weights.get(index, 0.0) + tf * (K1 + 1.0) / (tf + norm)
    indices = sorted(weights)
    return indices, [weights[i] for i in indices]


def query_vector(query: str) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of a query: each distinct word once, weight 1 (the engine's IDF
    weighs it); at most :data:`~mmembed.index.text.MAX_QUERY_TERMS` words, like the embedded
    index. Query text is only ever words: no syntax to escape."""
    unique = list(dict.fromkeys(terms(query)))[:MAX_QUERY_TERMS]
    indices = sorted({term_id(t) for t in unique})
    return indices, [1.0] * len(indices)
