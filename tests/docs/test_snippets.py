"""The README and the docs site run as written: every ```python block of README.md and
docs/*.md is executed, page by page, unless the line before it says why not
(``<!-- not run: REASON -->``). A page's blocks run in order in one namespace, in a fresh
folder holding the sample PDFs as ``reports/`` and ``page_index`` (those PDFs indexed by
``mmembed index``), after the page's ``<!-- setup: ... -->`` comment if it has one (code a
reader does not need to see, e.g. ``page = render_page(...)``).

Hub ids resolve as for a user, through the Hugging Face cache with the hub offline: the cache
holds ``vidore/colqwen2.5-v0.2`` as a tiny random ColQwen2.5 checkpoint (same family, same
files), so the snippets load, index and search for real, with meaningless scores. The links of
README.md (not part of the site build) are checked here too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HUB_MODELS = ("vidore/colqwen2.5-v0.2",)
NOT_RUN = re.compile(r"^<!-- not run: .+ -->$")
SETUP = re.compile(r"<!-- setup:\n(.*?)\n-->", re.S)


def python_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason not run)`` for every ```python block of a Markdown page."""
    lines = text.split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            reason = before if NOT_RUN.match(before) else None
            blocks.append((start + 1, textwrap.dedent("\n".join(lines[start + 1 : end])), reason))
            i = end
        i += 1
    return blocks


def test_every_block_either_runs_or_says_why_not() -> None:
    # Guards the parser itself: a fence it misread would silently skip a page.
    counted = sum(len(python_blocks(p.read_text(encoding="utf-8"))) for p in PAGES)
    fences = sum(p.read_text(encoding="utf-8").count("```python") for p in PAGES)
    assert counted == fences > 0


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> tuple[Path, dict[str, str]]:
    """(folder with reports/, environment of the snippet process)."""
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    base = tmp_path_factory.mktemp("snippets")
    cache = base / "hub-cache"
    for repo in HUB_MODELS:  # the Hugging Face cache layout: refs/main names a snapshot
        revision = "0" * 40
        entry = cache / f"models--{repo.replace('/', '--')}"
        shutil.copytree(tiny_colqwen2_5, entry / "snapshots" / revision)
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MMEMBED_MODEL", None)
    folder = base / "folder"
    # One sample PDF (3 pages) keeps each page's indexing short on the tiny model.
    write_sample_pdfs(base / "samples")
    (folder / "reports").mkdir(parents=True)
    shutil.copy(base / "samples" / "quarterly_financial_report.pdf", folder / "reports")
    return folder, env


def runnable_pages() -> list[Path]:
    return [p for p in PAGES if any(r is None for _, _, r in python_blocks(p.read_text(encoding="utf-8")))]


RUNNER = """
import json, os, shutil, sys, traceback
from mmembed.cli import main

base, jobs, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
os.chdir(base)  # page_index: the sample PDFs indexed by the command line, as a reader would
assert main(["index", "reports", "--index", "page_index", "--model", sys.argv[4], "-q"]) == 0
failures = {}
for job in jobs:
    os.chdir(shutil.copytree(base, job["folder"]))
    namespace = {"__name__": "__main__"}
    for where, code in job["chunks"]:
        try:
            exec(compile(code, where, "exec"), namespace)
        except BaseException:
            failures[job["page"]] = traceback.format_exc()[-4000:]
            break
json.dump(failures, open(out, "w"))
"""


@pytest.fixture(scope="module")
def failures(
    sandbox: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Runs every page's snippets in one process (torch and the frameworks imported once), each
    page in its own copy of the sandbox and its own namespace; returns page -> traceback."""
    import json

    work = tmp_path_factory.mktemp("pages")
    jobs = []
    for page in runnable_pages():
        text = page.read_text(encoding="utf-8")
        setup = SETUP.search(text)
        chunks = [(f"{page.name}, setup", setup.group(1))] if setup else []
        chunks += [
            (f"{page.name}, line {n}", code) for n, code, reason in python_blocks(text) if reason is None
        ]
        jobs.append({"page": page.name, "folder": str(work / page.stem), "chunks": chunks})
    (work / "jobs.json").write_text(json.dumps(jobs))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUNNER,
            str(sandbox[0]),
            str(work / "jobs.json"),
            str(work / "failures.json"),
            HUB_MODELS[0],
        ],
        env=sandbox[1],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, str] = json.loads((work / "failures.json").read_text())
    return result


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_snippets_run(page: Path, failures: dict[str, str]) -> None:
    assert page.name not in failures, f"{page.name}: a snippet failed\n{failures[page.name]}"


def test_readme_links_resolve() -> None:
    from markdown.extensions.toc import slugify

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path if path else ROOT / "README.md"
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), re.M)
            if anchor not in {slugify(h, "-") for h in headings}:
                broken.append(target)
    assert not broken, f"README.md links to missing files or headings: {broken}"
