"""``mmembed index --backfill-text``: give an index built before text search its page text.

Apart from :mod:`mmembed.pipeline` (which re-exports it) because it encodes nothing: it reads
the text layer of the recorded source files into an existing index's text store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackfillReport:
    """What one ``--backfill-text`` run did."""

    pages_filled: int = 0
    """Pages that now have text (their text layer was not empty)."""
    sources_read: list[str] = field(default_factory=list)
    sources_skipped: dict[str, str] = field(default_factory=dict)
    """Source -> why its pages got no text (file gone, changed since indexing, unreadable)."""
    created_text_store: bool = False
    rebuilt_fts: bool = False

    def summary(self) -> str:
        lines = [
            f"text backfill: {self.pages_filled} page(s) got text from {len(self.sources_read)} source(s); "
            f"{len(self.sources_skipped)} source(s) skipped"
            + ("; created the text store" if self.created_text_store else "")
            + ("; rebuilt the damaged full-text index" if self.rebuilt_fts else "")
        ]
        lines += [f"  skipped: {s}: {why}" for s, why in self.sources_skipped.items()]
        return "\n".join(lines)


def backfill_text(
    index: Any, *, tokenizer: str | None = None, password: str | dict[str, str] | None = None
) -> BackfillReport:
    """``mmembed index --backfill-text``: give an index (the embedded one) its page text.

    An index built before text search gets its text store (``tokenizer``, default
    ``unicode61``); a damaged full-text index is rebuilt from the stored text; then every page
    still without text gets its text layer read from its recorded source file, when that file's
    bytes still hash to what was indexed. Other sources are named in the report and skipped.
    Each source's text is one transaction: a killed run keeps what it stored, a re-run continues.
    """
    from collections import defaultdict
    from pathlib import Path

    from .loaders import LoadError, load_pages
    from .loaders.sources import kind_of

    report = BackfillReport()
    state = index.prepare_text_store(tokenizer)
    report.created_text_store, report.rebuilt_fts = state["created"], state["rebuilt"]
    by_source: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
    for pid, source, page, content_hash in index.pages_without_text():
        by_source[source][page] = (pid, content_hash)
    for source, wanted in by_source.items():
        path = Path(source)
        if not path.is_file():
            report.sources_skipped[source] = "the file is gone (re-index it from where it is now)"
            continue
        if kind_of(path.suffix.lower()) in ("image", "media"):
            continue  # images and recordings have no text layer: nothing to fill
        texts: list[tuple[str, str]] = []
        try:
            stream = load_pages(source, page_range=sorted(wanted), password=password, prefetch=0)
            for item in stream:
                pid, recorded = wanted[item.page]
                if item.content_hash != recorded:
                    report.sources_skipped[source] = (
                        f"changed since it was indexed (sha256 now {item.content_hash[:12]}…, recorded "
                        f"{recorded[:12]}…); re-index it to search its new text"
                    )
                    break
                if item.text:
                    texts.append((pid, item.text))
            issues = list(stream.issues)
        except LoadError as exc:
            report.sources_skipped[source] = str(exc)
            continue
        if source in report.sources_skipped:
            continue
        if issues and not texts:
            report.sources_skipped[source] = "; ".join(str(i) for i in issues[:3])
            continue
        report.pages_filled += index.store_texts(texts)
        report.sources_read.append(source)
    return report
