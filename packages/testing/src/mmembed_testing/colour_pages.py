"""A small, real retrieval task for fine-tuning tests: PDF pages whose content is told
apart by colour and pattern, and queries naming the colour.

``write_colour_pages(folder)`` draws, with reportlab, one PDF per pattern (plain, striped,
dotted, checked), each with one page per colour (eight colours): 32 pages in 4 source
files. Each page gets three queries (``"red"``, ``"a red page"``, ``"red background"``).
One page per colour — a different pattern for each — is held out: its queries are written
to ``held_out.jsonl`` and never to ``pairs.jsonl``, so the held-out split asks the model to
find a colour on a page it never trained on, among eight held-out pages (chance: 1 / 8).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.7, 0.1),
    "blue": (0.1, 0.1, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "purple": (0.5, 0.1, 0.6),
    "orange": (1.0, 0.5, 0.0),
    "grey": (0.5, 0.5, 0.5),
    "cyan": (0.0, 0.8, 0.9),
}
PATTERNS = ("plain", "striped", "dotted", "checked")
PAGE_POINTS = 144  # 2 x 2 inches: 112 x 112 pixels at 56 dpi
DPI = 56


@dataclass(frozen=True)
class ColourPages:
    docs: Path
    """Folder of the four PDFs (index it)."""
    pairs: Path
    """Training pairs (JSONL ``{query, source, page}``)."""
    held_out: Path
    """Held-out pairs, on pages ``pairs`` never names."""


def _draw(canvas: object, pattern: str, rgb: tuple[float, float, float]) -> None:
    from reportlab.lib.colors import Color

    c = canvas
    side = PAGE_POINTS
    c.setFillColor(Color(*rgb))  # type: ignore[attr-defined]
    c.rect(0, 0, side, side, stroke=0, fill=1)  # type: ignore[attr-defined]
    c.setFillColor(Color(1, 1, 1))  # type: ignore[attr-defined]
    if pattern == "striped":
        for y in range(0, side, 24):
            c.rect(0, y, side, 8, stroke=0, fill=1)  # type: ignore[attr-defined]
    elif pattern == "dotted":
        for x in range(6, side, 24):
            for y in range(6, side, 24):
                c.circle(x, y, 4, stroke=0, fill=1)  # type: ignore[attr-defined]
    elif pattern == "checked":
        for x in range(0, side, 24):
            for y in range(0, side, 24):
                if (x // 24 + y // 24) % 2:
                    c.rect(x, y, 24, 24, stroke=0, fill=1)  # type: ignore[attr-defined]


def write_colour_pages(folder: str | Path) -> ColourPages:
    """Write the PDFs and the two pairs files under ``folder`` (see module docstring)."""
    from reportlab.pdfgen import canvas

    root = Path(folder)
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    train: list[dict[str, object]] = []
    held: list[dict[str, object]] = []
    for p, pattern in enumerate(PATTERNS):
        path = docs / f"{pattern}.pdf"
        pdf = canvas.Canvas(str(path), pagesize=(PAGE_POINTS, PAGE_POINTS), invariant=1)
        for i, (name, rgb) in enumerate(COLOURS.items()):
            _draw(pdf, pattern, rgb)
            pdf.showPage()
            rows = [
                {"query": q, "source": str(path), "page": i + 1}
                for q in (name, f"a {name} page", f"{name} background")
            ]
            (held if i % len(PATTERNS) == p else train).extend(rows)
        pdf.save()
    pairs, held_out = root / "pairs.jsonl", root / "held_out.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    held_out.write_text("".join(json.dumps(r) + "\n" for r in held), encoding="utf-8")
    return ColourPages(docs, pairs, held_out)
