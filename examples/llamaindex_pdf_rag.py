"""RAG over PDF page images with LlamaIndex and mmembed (no OCR).

    python examples/llamaindex_pdf_rag.py --model vidore/colqwen2.5-v0.2 --data my_pdfs/ \
        --query "How much solar capacity was installed in 2023?"

Steps, all with the ``mmembed-llamaindex`` classes:

1. ``PDFPageImageReader`` reads every page as an ``ImageDocument`` (bad files are reported);
2. ``MMEmbedRetriever`` indexes the pages into an mmembed index and retrieves them by MaxSim;
   a ``RetrieverQueryEngine`` hands the page images to a multimodal chat LLM;
3. two-stage variant: a plain LlamaIndex ``MultiModalVectorStoreIndex`` over
   ``MMEmbedEmbedding`` (pooled single vectors) as first stage, ``MMEmbedRerank`` (exact
   MaxSim, reusing the vectors stored in the mmembed index) as second stage.

Without ``--model`` a tiny random ColQwen2.5 is built so the script runs anywhere in
seconds — its scores are meaningless. Without ``--data`` three sample PDFs are generated.
The LLM is LlamaIndex's ``MockLLM`` (it echoes its prompt); swap in a multimodal chat LLM,
e.g. ``llama_index.llms.openai.OpenAI(model="gpt-4o")``, for real answers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore
from llama_index.embeddings.mmembed import MMEmbedEmbedding
from llama_index.postprocessor.mmembed_rerank import MMEmbedRerank
from llama_index.readers.mmembed import PDFPageImageReader
from llama_index.retrievers.mmembed import MMEmbedRetriever


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="late-interaction checkpoint (default: a tiny random ColQwen2.5)")
    parser.add_argument("--data", help="PDFs / images / folder to index (default: generated sample PDFs)")
    parser.add_argument("--index", help="index folder (default: a temporary folder)")
    parser.add_argument("--query", default="How much solar capacity was installed in 2023?")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--dpi", type=float, default=144)
    return parser.parse_args(argv)


def show(title: str, nodes: Sequence[NodeWithScore]) -> None:
    print(title)
    for rank, hit in enumerate(nodes, 1):
        meta = hit.node.metadata
        print(f"  {rank}. {meta['file_name']} page {meta['page_label']}  score {hit.score:.4f}")


def tiny_checkpoint(folder: Path) -> str:
    """A tiny random ColQwen2.5 (scores meaningless) for a run without --model; it is built by
    mmembed-testing, which a plain `pip install mmembed-llamaindex` does not bring."""
    try:
        from mmembed_testing import make_tiny_checkpoint
    except ImportError:
        raise SystemExit(
            "No --model given, and the tiny demo model is built by mmembed-testing, which is not "
            "installed: pip install mmembed-testing, or pass --model CHECKPOINT (a hub id or a folder)."
        ) from None
    return str(make_tiny_checkpoint("colqwen2_5", folder))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmembed-li-") as tmp:
        model = args.model
        if model is None:
            model = tiny_checkpoint(Path(tmp) / "tiny-colqwen2_5")
            print("No --model given: using a tiny random ColQwen2.5; scores are meaningless.")
        data = args.data
        if data is None:
            from mmembed.loaders.sample_pdfs import write_sample_pdfs

            data = str(Path(tmp) / "pdfs")
            written = write_sample_pdfs(data)
            print(f"No --data given: wrote {len(written)} sample PDFs to {data}")

        # 1. Pages as LlamaIndex documents.
        reader = PDFPageImageReader(dpi=args.dpi)
        documents = reader.load_data(data)
        print(f"read {len(documents)} page(s); {len(reader.issues)} file(s) skipped")
        for issue in reader.issues:
            print(f"  skipped: {issue}")

        # 2. mmembed index + MaxSim retriever inside a query engine.
        retriever = MMEmbedRetriever(
            args.index or str(Path(tmp) / "index"),
            model_name=model,
            similarity_top_k=args.top_k,
            dpi=args.dpi,
        )
        print(retriever.index_documents(data, dpi=args.dpi).summary())
        llm = MockLLM(is_chat_model=True)  # replace with a multimodal chat LLM for real answers
        engine = RetrieverQueryEngine.from_args(retriever, llm=llm, multimodal=True)
        response = engine.query(args.query)
        show(f"MaxSim retrieval for {args.query!r}:", response.source_nodes)
        print(f"  answer (MockLLM echoes its prompt): {str(response)[:80]!r}...")

        # 3. Dense first stage in a LlamaIndex vector store, exact MaxSim rerank second.
        embed = MMEmbedEmbedding(model_name=model)  # same weights as the retriever's: cached once
        pages = [
            ImageNode(image=d.image, image_mimetype=d.image_mimetype, metadata=d.metadata) for d in documents
        ]
        dense = MultiModalVectorStoreIndex(pages, embed_model=embed, image_embed_model=embed)
        rerank = MMEmbedRerank(index=retriever.index, top_n=args.top_k)
        two_stage = RetrieverQueryEngine.from_args(
            dense.as_retriever(image_similarity_top_k=2 * args.top_k),
            llm=llm,
            multimodal=True,
            node_postprocessors=[rerank],
        )
        response = two_stage.query(args.query)
        show("dense first stage + MaxSim rerank:", response.source_nodes)
        print(
            f"  reranker: {rerank.pages_reused} page(s) reused from the index, {rerank.pages_encoded} encoded"
        )
        retriever.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
