"""Visual-document RAG in LangChain with mmembed: PDF pages as images, no OCR.

    loader (page images) -> mmembed index -> MMEmbedRetriever -> prompt with the page
    images as image_url blocks -> a multimodal chat model

Run it with no arguments to see the whole pipeline work in seconds on this machine: it
builds a tiny random ColQwen2.5 checkpoint and three sample PDFs, so the ranking (and
the scores) are meaningless. Point it at a real model and your own PDFs for real answers:

    python examples/langchain_pdf_rag.py --model vidore/colqwen2.5-v0.2 --data my_pdfs/ \\
        --question "What was the revenue in 2023?" --chat-model openai:gpt-4o

Without ``--chat-model`` the last step is a stand-in chat model that reports which page
images it received (``--chat-model`` needs ``pip install langchain`` plus the provider's
package, e.g. ``langchain-openai``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from langchain_mmembed import MMEmbedRetriever, PDFPageImageLoader, image_content_blocks

SYSTEM_PROMPT = "Answer the question from the document pages shown. Cite the file and page."


class PageCountingChatModel(BaseChatModel):
    """Stand-in multimodal chat model: answers with how many page images it was shown."""

    @property
    def _llm_type(self) -> str:
        return "page-counting-stand-in"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        images = sum(
            1
            for message in messages
            if isinstance(message.content, list)
            for block in message.content
            if isinstance(block, dict) and block.get("type") == "image_url"
        )
        text = f"(stand-in model) I was shown {images} page image(s); a real VLM would answer from them."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def build_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
    """The prompt: the question plus every retrieved page as a base64 image_url block."""
    docs = inputs["pages"]
    listing = "\n".join(f"- {Path(d.metadata['source']).name}, page {d.metadata['page']}" for d in docs)
    content: list[str | dict[str, Any]] = [
        {"type": "text", "text": f"Question: {inputs['question']}\nPages (in order):\n{listing}"},
        *image_content_blocks(docs),
    ]
    return [SystemMessage(content=SYSTEM_PROMPT), HumanMessage(content=content)]


def chat_model(spec: str | None) -> BaseChatModel:
    if spec is None:
        return PageCountingChatModel()
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:  # pragma: no cover - depends on the user's environment
        raise SystemExit("--chat-model needs `pip install langchain` and the provider's package") from exc
    return init_chat_model(spec)  # type: ignore[no-any-return]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model id or folder (default: a tiny random ColQwen2.5 built here)")
    parser.add_argument("--data", type=Path, help="PDF file or folder (default: generated sample PDFs)")
    parser.add_argument("--index", type=Path, help="index folder (default: a temporary one)")
    parser.add_argument("--question", default="What is the efficiency of the solar panels?")
    parser.add_argument("-k", type=int, default=2, help="pages to retrieve")
    parser.add_argument("--dpi", type=int, default=144, help="page render resolution")
    parser.add_argument("--chat-model", help="e.g. openai:gpt-4o (default: a stand-in model)")
    return parser.parse_args(argv)


def tiny_checkpoint(folder: Path) -> str:
    """A tiny random ColQwen2.5 (scores meaningless) for a run without --model; it is built by
    mmembed-testing, which a plain `pip install mmembed-langchain` does not bring."""
    try:
        from mmembed_testing import make_tiny_checkpoint
    except ImportError:
        raise SystemExit(
            "No --model given, and the tiny demo model is built by mmembed-testing, which is not "
            "installed: pip install mmembed-testing, or pass --model CHECKPOINT (a hub id or a folder)."
        ) from None
    return str(make_tiny_checkpoint("colqwen2_5", folder))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mmembed-langchain-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            model = tiny_checkpoint(work / "tiny-colqwen2_5")
            print(
                "NOTE: no --model given: using a tiny RANDOM ColQwen2.5, so rankings and scores are meaningless."
            )
        data = args.data
        if data is None:
            from mmembed.loaders.sample_pdfs import write_sample_pdfs

            data = work / "pdfs"
            write_sample_pdfs(data)
            print(f"NOTE: no --data given: generated sample PDFs in {data}")

        # 1. PDF pages as images (no OCR); unreadable files are reported, not fatal.
        loader = PDFPageImageLoader(data, dpi=args.dpi, image_format="jpeg", extract_text=True)
        pages = loader.load()
        for issue in loader.issues:
            print(f"skipped: {issue}")
        print(f"loaded {len(pages)} page(s) from {len({d.metadata['source'] for d in pages})} file(s)")
        if not pages:
            print("nothing to index", file=sys.stderr)
            return 1

        # 2. Embed them into an mmembed index; 3. retrieve with MaxSim.
        index = args.index or work / "index"
        retriever = MMEmbedRetriever.from_documents(pages, index=str(index), model=model, k=args.k)

        # 4. A chain: question -> pages -> multimodal prompt -> chat model -> answer (+ the pages).
        answer = RunnableLambda(build_messages) | chat_model(args.chat_model) | StrOutputParser()
        chain = RunnableParallel(pages=retriever, question=RunnablePassthrough()).assign(answer=answer)
        result = chain.invoke(args.question)
        print(f"question: {args.question}")
        for doc in result["pages"]:
            name = Path(doc.metadata["source"]).name
            print(f"  {name} page {doc.metadata['page']}: score {doc.metadata['score']:.3f}")
        print("answer:", result["answer"])
        retriever.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
