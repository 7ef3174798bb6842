"""Pseudo-queries: training queries sampled from each page's own stored text layer, for users
with no labelled pairs (``mmembed train --pseudo-queries N``).

Weaker than real queries: a sentence lifted from a page shares its exact words with the page,
so the model learns to find pages by what they literally say, not by how users ask. Use it to
adapt a model to a corpus's vocabulary and layouts when no labels exist; give real pairs when
you have them.

Per page, up to ``N`` queries are drawn from two pools:

- **sentences** of the page (split at ``. ! ? ;`` and blank lines) of at least
  :data:`MIN_SENTENCE_WORDS` words; a longer sentence gives a window of at most
  :data:`MAX_QUERY_WORDS` words;
- **key phrases**: runs of 2 to :data:`MAX_PHRASE_WORDS` content words (no stop words), ranked
  by the rarity of their words over the index's pages (summed inverse document frequency).

Never the whole page: a query always has fewer words than its page and at most
:data:`MAX_QUERY_WORDS` words / :data:`MAX_QUERY_CHARS` characters. A candidate found on more
than one page (running headers, footers, boilerplate) is dropped: it would not name one page.
Pages without text, or with fewer than :data:`MIN_PAGE_WORDS` words, are skipped and counted.
The draw is deterministic for a seed and the same pages (key-phrase rarity and the
boilerplate test look at every page, so adding pages can change a page's queries).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..types import PageRecord
from .pairs import TrainPair

MAX_QUERY_WORDS = 12
MAX_QUERY_CHARS = 120
MIN_SENTENCE_WORDS = 3
MAX_PHRASE_WORDS = 4
MIN_PAGE_WORDS = 5
"""A page with fewer words has no part that is both a query and not (almost) the page."""
MAX_CANDIDATES = 64
"""Sentences and key phrases kept per page before the draw (bounds memory on long pages)."""
TEXT_CHUNK = 256
"""Pages whose text is read from the index at a time."""

_SENTENCE_END = re.compile(r"(?<=[.!?;。！？])\s+|\n\s*\n")
_WORD = re.compile(r"\w[\w'’-]*")
_STOP_WORDS = """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my no nor not now of off on once only or other our ours out over own same she
    should so some such than that the their theirs them then there these they this those through
    to too under until up very was we were what when where which while who whom why will with
    would you your yours"""
_STOP = frozenset(_STOP_WORDS.split())
"""English stop words: never part of a key phrase."""


@dataclass(frozen=True)
class PseudoQuerySummary:
    """What sampling found (written to ``training.json`` and printed by the CLI)."""

    per_page: int
    queries: int
    pages_with_queries: int
    pages_without_text: int
    pages_with_too_little_text: int
    seed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"{self.queries} pseudo-queries from {self.pages_with_queries} page(s) "
            f"(up to {self.per_page} per page); skipped {self.pages_without_text} page(s) without text "
            f"and {self.pages_with_too_little_text} with too little text"
        )


def _normal(text: str) -> str:
    """Lower-case words joined by single spaces (what "the same text" means here)."""
    return " ".join(w.lower() for w in _WORD.findall(text))


def _sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if s.strip()]


def _bounded(words: list[str], rng: random.Random) -> str:
    """At most :data:`MAX_QUERY_WORDS` consecutive words of ``words`` (a random window of a
    longer run) and at most :data:`MAX_QUERY_CHARS` characters, cut at a word."""
    if len(words) > MAX_QUERY_WORDS:
        start = rng.randrange(len(words) - MAX_QUERY_WORDS + 1)
        words = words[start : start + MAX_QUERY_WORDS]
    text = " ".join(words)
    while len(text) > MAX_QUERY_CHARS and len(words) > 1:
        words = words[:-1]
        text = " ".join(words)
    return text[:MAX_QUERY_CHARS].strip(" ,:;-")


def _key_phrases(sentence: str) -> list[list[str]]:
    """Runs of content words (split at stop words and punctuation), 2 to
    :data:`MAX_PHRASE_WORDS` words long (a longer run gives its windows of that length)."""
    phrases: list[list[str]] = []
    for chunk in re.split(r"[,.;:!?()\[\]\"“”]", sentence):
        run: list[str] = []
        for word in [*_WORD.findall(chunk), None]:
            if word is not None and word.lower() not in _STOP:
                run.append(word)
                continue
            size = min(len(run), MAX_PHRASE_WORDS)
            if size >= 2:
                phrases += [run[i : i + size] for i in range(len(run) - size + 1)]
            run = []
    return phrases


@dataclass
class _Page:
    words: int
    sentences: list[str]
    phrases: list[tuple[str, ...]]


def _candidates(page_id: str, text: str, seed: int) -> _Page:
    rng = random.Random(f"{seed}/{page_id}/windows")
    words = len(_WORD.findall(text))
    sentences, phrases = [], []
    for sentence in _sentences(text):
        tokens = sentence.split()
        if len(_WORD.findall(sentence)) >= MIN_SENTENCE_WORDS:
            sentences.append(_bounded(tokens, rng))
        phrases += [tuple(p) for p in _key_phrases(sentence)]
    return _Page(words, sentences[:MAX_CANDIDATES], list(dict.fromkeys(phrases))[: MAX_CANDIDATES * 4])


def sample_pseudo_queries(
    texts: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
    per_page: int,
    *,
    seed: int = 0,
) -> tuple[list[TrainPair], PseudoQuerySummary]:
    """Up to ``per_page`` pseudo-queries for each page of ``texts`` (page id -> stored text,
    ``None`` or blank for a page without text), in page order (see module docstring)."""
    items = texts.items() if isinstance(texts, Mapping) else texts
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    pages: dict[str, _Page] = {}
    without_text = too_little = 0
    document_frequency: Counter[str] = Counter()
    seen_on: Counter[str] = Counter()  # normalised candidate -> pages it is on
    for page_id, text in items:
        if not text or not text.strip():
            without_text += 1
            continue
        page = _candidates(page_id, text, seed)
        if page.words < MIN_PAGE_WORDS:
            too_little += 1
            continue
        pages[page_id] = page
        document_frequency.update({w.lower() for w in _WORD.findall(text)})
        seen_on.update({_normal(c) for c in page.sentences} | {_normal(" ".join(p)) for p in page.phrases})
    n_pages = max(1, len(pages))
    pairs: list[TrainPair] = []
    with_queries = 0
    for page_id, page in pages.items():
        rng = random.Random(f"{seed}/{page_id}")

        def usable(query: str, page: _Page = page) -> bool:
            n_words = len(_WORD.findall(query))
            return 0 < n_words < page.words and seen_on[_normal(query)] == 1

        sentences = [s for s in dict.fromkeys(page.sentences) if usable(s)]
        rarity = {
            " ".join(p): sum(math.log(n_pages / document_frequency[w.lower()]) + 1.0 for w in p)
            for p in page.phrases
        }
        phrases = [p for p in sorted(rarity, key=lambda p: (-rarity[p], p)) if usable(p)][: 2 * per_page]
        rng.shuffle(sentences)
        rng.shuffle(phrases)
        # Alternate the two pools (a sentence first), each in its shuffled order.
        chosen: list[str] = []
        taken: set[str] = set()
        for i in range(max(len(sentences), len(phrases))):
            for pool in (sentences, phrases):
                if i < len(pool) and _normal(pool[i]) not in taken and len(chosen) < per_page:
                    chosen.append(pool[i])
                    taken.add(_normal(pool[i]))
        if not chosen:
            too_little += 1
            continue
        with_queries += 1
        pairs += [
            TrainPair(q, page_id, f"pseudo-query {j} of page {page_id}") for j, q in enumerate(chosen, 1)
        ]
    summary = PseudoQuerySummary(
        per_page=per_page,
        queries=len(pairs),
        pages_with_queries=with_queries,
        pages_without_text=without_text,
        pages_with_too_little_text=too_little,
        seed=seed,
    )
    return pairs, summary


def page_texts(index: Any, records: Sequence[PageRecord]) -> Iterator[tuple[str, str | None]] | None:
    """``(page id, stored text)`` of every record, read in chunks, or ``None`` when the
    backend stores no page text (only the embedded index does)."""
    get_texts = getattr(index, "get_texts", None)
    if get_texts is None:
        return None

    def read() -> Iterator[tuple[str, str | None]]:
        for start in range(0, len(records), TEXT_CHUNK):
            ids = [r.id for r in records[start : start + TEXT_CHUNK]]
            yield from zip(ids, get_texts(ids), strict=True)

    return read()
