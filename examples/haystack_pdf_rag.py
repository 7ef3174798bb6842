"""Visual RAG over PDFs with Haystack and mmembed: no OCR, the pages themselves are retrieved.

    python examples/haystack_pdf_rag.py [--model PATH] [--data FOLDER] [--question "..."]

1. Indexing pipeline: PDFToPageImageDocuments → MMEmbedDocumentImageEmbedder → DocumentWriter
   into an MMEmbedDocumentStore (an mmembed index folder).
2. Query pipeline: MMEmbedTextEmbedder → MMEmbedRetriever (MaxSim) → MMEmbedMaxSimRanker →
   DocumentToImageContent → ChatPromptBuilder (page images in the prompt) → chat generator.

``--model`` is a checkpoint folder or Hugging Face id (e.g. vidore/colqwen2.5-v0.2; a GPU is
strongly advised). Without it, a tiny random ColQwen2.5 checkpoint is built so the example
runs anywhere in seconds — its scores are meaningless. ``--data`` defaults to three generated
sample PDFs. The chat step uses OpenAI with ``--openai`` (needs OPENAI_API_KEY); otherwise a
stand-in generator reports which page images the prompt carries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from haystack import Pipeline, component
from haystack.components.builders import ChatPromptBuilder
from haystack.components.converters.image import DocumentToImageContent
from haystack.components.writers import DocumentWriter
from haystack.dataclasses import ChatMessage
from haystack.document_stores.types import DuplicatePolicy
from haystack_integrations.components.converters.mmembed import PDFToPageImageDocuments
from haystack_integrations.components.embedders.mmembed import (
    MMEmbedDocumentImageEmbedder,
    MMEmbedTextEmbedder,
)
from haystack_integrations.components.rankers.mmembed import MMEmbedMaxSimRanker
from haystack_integrations.components.retrievers.mmembed import MMEmbedRetriever
from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

DEFAULT_QUESTION = "How much solar capacity was installed in 2023?"

PROMPT = """
{% message role="system" %}
You answer questions from the document pages you are shown, citing file and page.
{% endmessage %}
{% message role="user" %}
Question: {{ question }}
Pages:
{% for image in images if image %}
{{ image.meta.file_path }} page {{ image.meta.page_number }}:
{{ image | templatize_part }}
{% endfor %}
{% endmessage %}
"""


@component
class PageListingChatGenerator:
    """Stand-in for a vision chat model: says which page images the prompt carries."""

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage]) -> dict[str, list[ChatMessage]]:
        images = [image for message in messages for image in message.images]
        pages = ", ".join(f"{Path(i.meta['file_path']).name} p.{i.meta['page_number']}" for i in images)
        text = f"(no chat model configured) the prompt carries {len(images)} page image(s): {pages}"
        return {"replies": [ChatMessage.from_assistant(text)]}


def indexing_pipeline(store: MMEmbedDocumentStore, model: str, dpi: float) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("converter", PDFToPageImageDocuments(dpi=dpi))
    pipeline.add_component("embedder", MMEmbedDocumentImageEmbedder(model=model, dpi=dpi))
    pipeline.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("converter.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    return pipeline


def query_pipeline(store: MMEmbedDocumentStore, model: str, generator: Any, top_k: int) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("query_embedder", MMEmbedTextEmbedder(model=model))
    pipeline.add_component("retriever", MMEmbedRetriever(document_store=store, top_k=top_k * 2))
    pipeline.add_component("ranker", MMEmbedMaxSimRanker(model=model, document_store=store, top_k=top_k))
    pipeline.add_component("page_images", DocumentToImageContent(size=(768, 768)))
    pipeline.add_component(
        "prompt", ChatPromptBuilder(template=PROMPT, required_variables=["question", "images"])
    )
    pipeline.add_component("llm", generator)
    pipeline.connect("query_embedder.multi_embedding", "retriever.query_multi_embedding")
    pipeline.connect("query_embedder.encoder", "retriever.query_encoder")
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.connect("ranker.documents", "page_images.documents")
    pipeline.connect("page_images.image_contents", "prompt.images")
    pipeline.connect("prompt.prompt", "llm.messages")
    return pipeline


def tiny_checkpoint(folder: Path) -> str:
    """A tiny random ColQwen2.5 (scores meaningless) for a run without --model; it is built by
    mmembed-testing, which a plain `pip install mmembed-haystack` does not bring."""
    try:
        from mmembed_testing import make_tiny_checkpoint
    except ImportError:
        raise SystemExit(
            "No --model given, and the tiny demo model is built by mmembed-testing, which is not "
            "installed: pip install mmembed-testing, or pass --model CHECKPOINT (a hub id or a folder)."
        ) from None
    return str(make_tiny_checkpoint("colqwen2_5", folder))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="checkpoint folder or Hugging Face id (default: a tiny random checkpoint)"
    )
    parser.add_argument("--data", type=Path, help="folder or PDF to index (default: generated sample PDFs)")
    parser.add_argument("--index", type=Path, help="index folder (default: a temporary folder)")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--dpi", type=float, default=144, help="page render resolution")
    parser.add_argument(
        "--openai", metavar="MODEL", help="answer with this OpenAI chat model (needs OPENAI_API_KEY)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mmembed-haystack-") as scratch:
        work = Path(scratch)
        model = args.model
        if model is None:
            model = tiny_checkpoint(work / "tiny-colqwen2_5")
            print(
                "No --model given: using a TINY RANDOM ColQwen2.5 checkpoint; the scores below are MEANINGLESS."
            )
        data = args.data
        if data is None:
            from mmembed.loaders.sample_pdfs import write_sample_pdfs

            data = work / "pdfs"
            write_sample_pdfs(data)
            print(f"No --data given: indexing the generated sample PDFs in {data}.")
        store = MMEmbedDocumentStore(path=str(args.index or work / "index"))

        indexed = indexing_pipeline(store, model, args.dpi).run(
            {"converter": {"sources": [data]}}, include_outputs_from={"converter"}
        )
        for issue in indexed["converter"]["issues"]:
            print(f"skipped: {issue['message']}")
        print(
            f"indexed {indexed['writer']['documents_written']} page(s); the store holds {store.count_documents()}"
        )

        if args.openai:
            from haystack.components.generators.chat import OpenAIChatGenerator

            generator: Any = OpenAIChatGenerator(model=args.openai)
        else:
            generator = PageListingChatGenerator()
        answered = query_pipeline(store, model, generator, args.top_k).run(
            {
                "query_embedder": {"text": args.question},
                "ranker": {"query": args.question},
                "prompt": {"question": args.question},
            },
            include_outputs_from={"ranker"},
        )
        print(f"\nQ: {args.question}")
        for rank, page in enumerate(answered["ranker"]["documents"], 1):
            print(
                f"  {rank}. {Path(page.meta['file_path']).name} page {page.meta['page_number']}  score {page.score:.3f}"
            )
        print(f"A: {answered['llm']['replies'][0].text}")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
