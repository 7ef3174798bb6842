"""Realistic, deterministic sample PDFs (reportlab) for the demo, tests and benchmarks.

Three multi-page documents on clearly distinct topics, so that retrieval can be checked:
a solar-energy report (capacity-by-year table, line chart), a cookbook (ingredient
tables, including a tomato soup) and a quarterly financial report (revenue bar chart,
income statement). Reportlab's invariant mode makes the bytes identical on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.charts.linecharts import HorizontalLineChart
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import LETTER
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import inch
    from reportlab.platypus import (
        Flowable,
        PageBreak,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )
except ImportError as error:  # an extra, not a core dependency: only the demo and examples need it
    raise ImportError(
        "mmembed.loaders.sample_pdfs writes its sample PDFs with reportlab, which is not installed: "
        "pip install 'mmembed-core[examples]'"
    ) from error

_STYLES = getSampleStyleSheet()
_BODY = ParagraphStyle("Body", parent=_STYLES["BodyText"], fontSize=10.5, leading=14.5, spaceAfter=6)
_H1, _H2 = _STYLES["Title"], _STYLES["Heading2"]


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float]) -> Table:
    table = Table([list(map(str, row)) for row in rows], colWidths=list(widths), hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#2f4858")),
                ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
                ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#eef2f4")]),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9aa5ab")),
                ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
                ("FONTSIZE", (0, 0), (-1, -1), 9.5),
            ]
        )
    )
    return table


def _bar_chart(title: str, labels: Sequence[str], values: Sequence[float], unit: str) -> Drawing:
    drawing = Drawing(6.5 * inch, 3.1 * inch)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 50, 40, 6.5 * inch - 80, 3.1 * inch - 85
    chart.data = [list(values)]
    chart.categoryAxis.categoryNames = list(labels)
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labelTextFormat = "%d " + unit
    chart.bars[0].fillColor = colors.HexColor("#33658a")
    chart.barLabelFormat = "%.1f"
    chart.barLabels.nudge = 8
    drawing.add(chart)
    drawing.add(String(6.5 * inch / 2, 3.1 * inch - 20, title, textAnchor="middle", fontSize=12))
    return drawing


def _line_chart(title: str, labels: Sequence[str], series: Sequence[Sequence[float]]) -> Drawing:
    drawing = Drawing(6.5 * inch, 3 * inch)
    chart = HorizontalLineChart()
    chart.x, chart.y, chart.width, chart.height = 50, 35, 6.5 * inch - 80, 3 * inch - 80
    chart.data = [list(values) for values in series]
    chart.categoryAxis.categoryNames = list(labels)
    chart.valueAxis.valueMin = 0
    chart.lines[0].strokeColor = colors.HexColor("#f6ae2d")
    chart.lines[0].strokeWidth = 2.5
    drawing.add(chart)
    drawing.add(String(6.5 * inch / 2, 3 * inch - 20, title, textAnchor="middle", fontSize=12))
    return drawing


def _paragraphs(*texts: str) -> list[Flowable]:
    return [Paragraph(text, _BODY) for text in texts]


def solar_report() -> list[Flowable]:
    years = [str(year) for year in range(2015, 2025)]
    capacity = [228, 306, 403, 509, 621, 760, 940, 1180, 1590, 2050]
    return [
        Paragraph("Solar Energy Outlook 2024", _H1),
        Paragraph("Executive summary", _H2),
        *_paragraphs(
            "Photovoltaic (PV) solar power was again the fastest-growing source of electricity. "
            "Cumulative installed solar capacity worldwide passed two terawatts, having doubled in "
            "under three years, as utility-scale solar parks and rooftop systems both expanded.",
            "Falling module prices, shorter permitting times and higher wholesale power prices drove "
            "record installations. Grid connection queues and curtailment at midday remain the main "
            "obstacles, and battery storage is increasingly paired with new solar farms.",
        ),
        Paragraph("Installed solar capacity by year", _H2),
        *_paragraphs(
            "The table lists cumulative photovoltaic capacity at year end, the capacity added during "
            "the year, and solar's share of global electricity generation."
        ),
        _table(
            [("Year", "Cumulative capacity (GW)", "Added (GW)", "Share of electricity (%)")]
            + [
                (year, cap, cap - prev, f"{share:.1f}")
                for year, cap, prev, share in zip(
                    years,
                    capacity,
                    [178, *capacity[:-1]],
                    [1.1, 1.4, 1.8, 2.2, 2.7, 3.2, 3.7, 4.5, 5.5, 6.9],
                    strict=True,
                )
            ],
            [0.8 * inch, 1.9 * inch, 1.1 * inch, 1.9 * inch],
        ),
        PageBreak(),
        Paragraph("Growth of installed capacity", _H2),
        _line_chart("Cumulative solar PV capacity (GW), 2015-2024", years, [capacity]),
        *_paragraphs(
            "Growth accelerated after 2020: each of the last three years added more solar capacity "
            "than the previous record. China accounted for more than half of new installations, "
            "followed by the European Union, the United States and India.",
            "Module prices fell below 0.15 USD per watt for mainstream monocrystalline panels, while "
            "cell efficiency of TOPCon and heterojunction designs rose above 25 percent.",
        ),
        PageBreak(),
        Paragraph("Grid integration and storage", _H2),
        *_paragraphs(
            "High solar shares change the daily shape of electricity demand on the grid. Lithium-ion "
            "battery storage shifts midday solar output into the evening peak; utility-scale battery "
            "capacity tripled in two years.",
            "Inverters with grid-forming controls, flexible demand and stronger transmission lines "
            "reduce curtailment. Agrivoltaics and floating solar open new sites without competing "
            "for farmland.",
            "Outlook: annual additions are expected to stay above 500 GW per year, with solar "
            "becoming the largest source of installed power capacity before 2030.",
        ),
    ]


def cookbook() -> list[Flowable]:
    def recipe(
        name: str, intro: str, ingredients: Sequence[tuple[str, str]], steps: Sequence[str]
    ) -> list[Any]:
        return [
            Paragraph(name, _H2),
            *_paragraphs(intro),
            _table([("Ingredient", "Quantity"), *ingredients], [3.2 * inch, 1.6 * inch]),
            Spacer(1, 8),
            *_paragraphs(*(f"{number}. {step}" for number, step in enumerate(steps, 1))),
        ]

    return [
        Paragraph("The Mediterranean Kitchen: Home Recipes", _H1),
        *recipe(
            "Roasted tomato soup with basil",
            "A velvety tomato soup for late summer, when ripe tomatoes are cheap. Serves four.",
            [
                ("Ripe plum tomatoes", "1.2 kg"),
                ("Red onion", "1 large"),
                ("Garlic cloves", "4"),
                ("Extra-virgin olive oil", "3 tbsp"),
                ("Vegetable stock", "500 ml"),
                ("Fresh basil leaves", "1 handful"),
                ("Salt and black pepper", "to taste"),
            ],
            [
                "Halve the tomatoes, slice the onion and roast both with the garlic and olive oil at "
                "200 °C for 40 minutes.",
                "Tip everything into a pot, add the stock and simmer for 10 minutes.",
                "Blend until smooth with the basil, season, and serve with crusty bread.",
            ],
        ),
        PageBreak(),
        *recipe(
            "Chickpea salad with lemon and parsley",
            "A quick lunch salad that keeps well in the fridge for two days.",
            [
                ("Cooked chickpeas", "480 g"),
                ("Cucumber", "1"),
                ("Cherry tomatoes", "250 g"),
                ("Flat-leaf parsley", "1 bunch"),
                ("Lemon juice", "2 tbsp"),
                ("Feta cheese", "120 g"),
            ],
            [
                "Dice the cucumber, halve the cherry tomatoes and chop the parsley.",
                "Toss with the chickpeas, lemon juice and olive oil; crumble the feta on top.",
            ],
        ),
        PageBreak(),
        *recipe(
            "Lemon and olive oil cake",
            "A moist cake made with olive oil instead of butter, scented with lemon zest.",
            [
                ("Plain flour", "200 g"),
                ("Caster sugar", "180 g"),
                ("Eggs", "3"),
                ("Olive oil", "150 ml"),
                ("Lemons (zest and juice)", "2"),
                ("Baking powder", "2 tsp"),
            ],
            [
                "Whisk the eggs and sugar until pale, then beat in the olive oil, zest and juice.",
                "Fold in the flour and baking powder, pour into a lined tin and bake at 180 °C for "
                "35 minutes.",
            ],
        ),
    ]


def financial_report() -> list[Flowable]:
    quarters = ["Q3 23", "Q4 23", "Q1 24", "Q2 24", "Q3 24"]
    revenue = [41.2, 44.8, 46.1, 49.7, 53.9]
    return [
        Paragraph("Northwind Analytics — Quarterly Report, Q3 2024", _H1),
        Paragraph("Highlights", _H2),
        *_paragraphs(
            "Revenue grew 31 percent year over year to 53.9 million dollars, the fifth consecutive "
            "quarter of growth. Subscription revenue now makes up 78 percent of the total.",
            "Operating margin improved to 14.2 percent and free cash flow was positive for the third "
            "quarter in a row. The board raised full-year revenue guidance.",
        ),
        Paragraph("Quarterly revenue", _H2),
        _bar_chart("Revenue by quarter (USD millions)", quarters, revenue, "M"),
        PageBreak(),
        Paragraph("Condensed income statement", _H2),
        _table(
            [
                ("USD millions", "Q3 2023", "Q3 2024", "Change"),
                ("Revenue", "41.2", "53.9", "+31%"),
                ("Cost of revenue", "12.8", "15.6", "+22%"),
                ("Gross profit", "28.4", "38.3", "+35%"),
                ("Operating expenses", "24.9", "30.6", "+23%"),
                ("Operating income", "3.5", "7.7", "+120%"),
                ("Net income", "2.6", "5.9", "+127%"),
                ("Earnings per share (USD)", "0.11", "0.24", "+118%"),
            ],
            [2.2 * inch, 1.1 * inch, 1.1 * inch, 1.0 * inch],
        ),
        *_paragraphs(
            "Gross margin expanded by 2.2 points thanks to lower cloud hosting costs per customer. "
            "Operating expenses grew more slowly than revenue as sales hiring normalised."
        ),
        PageBreak(),
        Paragraph("Outlook and risks", _H2),
        *_paragraphs(
            "For the fourth quarter we expect revenue between 56 and 58 million dollars. Net revenue "
            "retention stood at 118 percent and the sales pipeline is up 40 percent.",
            "Risks include currency movements, slower enterprise budgets and competition on price. "
            "The balance sheet holds 96 million dollars in cash and no debt.",
        ),
    ]


SAMPLES: dict[str, Callable[[], list[Flowable]]] = {
    "solar_energy_report.pdf": solar_report,
    "mediterranean_cookbook.pdf": cookbook,
    "quarterly_financial_report.pdf": financial_report,
}


def _build(path: Path, story: list[Flowable], title: str) -> Path:
    document = SimpleDocTemplate(
        str(path),
        pagesize=LETTER,
        title=title,
        author="mmembed sample data",
        creator="mmembed",
        producer="mmembed",
        invariant=1,  # fixed dates and ids: identical bytes on every run
        leftMargin=inch,
        rightMargin=inch,
        topMargin=0.9 * inch,
        bottomMargin=0.9 * inch,
    )
    document.build(story)
    return path


def write_sample_pdfs(folder: str | Path) -> list[Path]:
    """Write the three sample PDFs (3 pages each) into ``folder``; returns their paths."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    return [
        _build(target / name, make(), Path(name).stem.replace("_", " ")) for name, make in SAMPLES.items()
    ]


def write_long_pdf(path: str | Path, pages: int) -> Path:
    """A ``pages``-page PDF cycling through the sample content (text, tables, charts), one
    section per page: the realistic load of the render benchmark and streaming tests."""
    if pages < 1:
        raise ValueError("pages must be >= 1")
    sections = [flowables for make in SAMPLES.values() for flowables in _split_pages(make())]
    story: list[Flowable] = []
    for number in range(pages):
        if number:
            story.append(PageBreak())
        story.append(Paragraph(f"Section {number + 1} of {pages}", _STYLES["Heading4"]))
        story.extend(sections[number % len(sections)])
    return _build(Path(path), story, f"long sample ({pages} pages)")


def _split_pages(story: list[Flowable]) -> list[list[Flowable]]:
    pages: list[list[Flowable]] = [[]]
    for flowable in story:
        if isinstance(flowable, PageBreak):
            pages.append([])
        else:
            pages[-1].append(flowable)
    return [page for page in pages if page]
