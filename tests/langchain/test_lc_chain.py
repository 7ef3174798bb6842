"""An LCEL chain: loader -> index -> retriever -> multimodal prompt -> chat model.

The chat model is a fake that records what it receives; the test checks that exactly the
top pages by MaxSim (computed independently from the encoder) reach it, as base64
``image_url`` blocks holding those pages' thumbnails, in rank order.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from PIL import Image

from langchain_mmembed import MMEmbedRetriever, PDFPageImageLoader, image_content_blocks

DPI = 24
QUESTION = "How efficient are the solar panels?"


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any
    ) -> None:
        self.prompts.extend(messages)


def _prompt(inputs: dict[str, Any]) -> list[BaseMessage]:
    pages: list[Document] = inputs["pages"]
    listing = ", ".join(f"{Path(d.metadata['source']).name} p{d.metadata['page']}" for d in pages)
    return [
        SystemMessage(content="Answer from the page images."),
        HumanMessage(
            content=[
                {"type": "text", "text": f"{inputs['question']} (pages: {listing})"},
                *image_content_blocks(pages),
            ]
        ),
    ]


def test_right_pages_reach_the_chat_model(tmp_path: Path, sample_pdfs: list[Path], tiny_model: str) -> None:
    import mmembed
    from mmembed.loaders import make_thumbnail

    pages = PDFPageImageLoader(sample_pdfs[:2], dpi=DPI).load()
    retriever = MMEmbedRetriever.from_documents(pages, index=tmp_path / "index", model=tiny_model, k=3)

    recorder = _Recorder()
    model = GenericFakeChatModel(messages=iter([AIMessage(content="The panels are 22% efficient.")]))
    answer = RunnableLambda(_prompt) | model | StrOutputParser()
    chain = RunnableParallel(pages=retriever, question=RunnablePassthrough()).assign(answer=answer)
    result = chain.invoke(QUESTION, config={"callbacks": [recorder]})

    assert result["answer"] == "The panels are 22% efficient."
    # Independent expectation: encode every loaded page image, score exactly, take the top 3.
    encoder = mmembed.load_encoder(tiny_model)
    images = [
        Image.open(io.BytesIO(base64.b64decode(p.metadata["image_base64"]))).convert("RGB") for p in pages
    ]
    scores = mmembed.score(encoder.encode_queries([QUESTION]), encoder.encode_images(images), "maxsim")[0]
    by_id = {p.id: (float(s), p, img) for p, s, img in zip(pages, scores, images, strict=True)}
    best = sorted((s for s, _, _ in by_id.values()), reverse=True)[:3]
    retrieved = result["pages"]
    # Rank r holds a page whose own score is the r-th best (robust to float16 storage ties).
    assert len(retrieved) == 3 and len({d.id for d in retrieved}) == 3
    for doc, expected_score in zip(retrieved, best, strict=True):
        assert by_id[doc.id][0] == pytest.approx(expected_score, abs=2e-2)
        assert doc.metadata["score"] == pytest.approx(by_id[doc.id][0], abs=2e-2)

    (messages,) = recorder.prompts
    human = messages[-1]
    assert isinstance(human.content, list)
    text = human.content[0]["text"]  # type: ignore[index]
    urls = [
        b["image_url"]["url"] for b in human.content if isinstance(b, dict) and b.get("type") == "image_url"
    ]
    assert len(urls) == 3
    for url, doc in zip(urls, retrieved, strict=True):
        _, page, img = by_id[doc.id]
        assert url.startswith("data:image/jpeg;base64,")
        # Exactly that page's thumbnail, made from the loader's render of it, in rank order.
        assert base64.b64decode(url.split(",", 1)[1]) == make_thumbnail(img)
        assert f"{Path(page.metadata['source']).name} p{page.metadata['page']}" in text
    retriever.close()
