"""Smoke test of every distribution at the lowest declared dependency versions (`make test-compat`).

Runs what a user of each package runs first: the CLI, the three framework examples (their README
paths: index generated PDFs with a tiny checkpoint, retrieve through the framework's retriever,
rerank, build the prompt) and a Haystack pipeline through ``dumps`` / ``loads``. Exits non-zero
on the first failure, naming it.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "mmembed")  # the installed console script
KEY_DEPENDENCIES = (
    "torch",
    "torchvision",
    "transformers",
    "llama-index-core",
    "langchain-core",
    "langchain-classic",
    "haystack-ai",
)


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"compat: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def check_versions() -> None:
    """The environment really is at the pinned lowest versions."""
    pins = {}
    for line in (ROOT / "compat" / "lowest.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    for name in KEY_DEPENDENCIES:
        installed = importlib.metadata.version(name).split("+")[0]
        if installed != pins[name]:
            sys.exit(f"compat: {name} {installed} is installed, but compat/lowest.txt pins {pins[name]}")
        print(f"compat: {name}=={installed}")


def check_cli(work: Path) -> None:
    from mmembed.loaders.sample_pdfs import write_sample_pdfs
    from mmembed_testing import make_tiny_checkpoint

    model = make_tiny_checkpoint("colqwen2_5", work / "tiny")
    pdfs = write_sample_pdfs(work / "pdfs")
    index = str(work / "cli_index")
    run(CLI, "index", str(pdfs[0]), "--index", index, "--model", str(model))
    hits = json.loads(run(CLI, "search", "--index", index, "solar capacity", "-k", "2", "--json"))
    if len(hits) != 2:
        sys.exit(f"compat: mmembed search returned {hits!r}")
    print("compat: CLI index + search ok")


def check_haystack_serialisation(work: Path) -> None:
    from haystack import Pipeline
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder
    from haystack_integrations.components.rankers.mmembed import MMEmbedMaxSimRanker
    from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    store = MMEmbedDocumentStore(path=str(work / "cli_index"))
    model = str(work / "tiny")
    pipeline = Pipeline()
    pipeline.add_component("embedder", MMEmbedTextEmbedder(model=model))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=3))
    pipeline.add_component("ranker", MMEmbedMaxSimRanker(model=model, document_store=store, top_k=2))
    pipeline.connect("embedder.multi_embedding", "retriever.query_multi_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")
    restored = Pipeline.loads(pipeline.dumps())
    out = restored.run({"embedder": {"text": "solar capacity"}, "ranker": {"query": "solar capacity"}})
    if len(out["ranker"]["documents"]) != 2:
        sys.exit(f"compat: the restored Haystack pipeline returned {out!r}")
    print("compat: Haystack Pipeline.dumps/loads + run ok")


def main() -> int:
    check_versions()
    with tempfile.TemporaryDirectory(prefix="mmembed-compat-") as scratch:
        work = Path(scratch)
        check_cli(work)
        check_haystack_serialisation(work)
    for example in ("llamaindex_pdf_rag.py", "langchain_pdf_rag.py", "haystack_pdf_rag.py"):
        run(sys.executable, str(ROOT / "examples" / example))
        print(f"compat: examples/{example} ok")
    print("compat: all smoke checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
