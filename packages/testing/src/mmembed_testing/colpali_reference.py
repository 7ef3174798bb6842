"""colpali-engine 0.3.18 as the parity reference (tests only; mmembed never imports it).

``pip install --no-deps colpali-engine==0.3.18`` (see requirements/dev.txt). Each
:class:`Reference` wraps one colpali model + processor, runs them float32 on CPU with
eager attention and returns per-input unpadded tensors, so that tests compare them with
mmembed's outputs one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from . import parity
from .parity import unpad

# Reference classes per mmembed family: (model class, processor class, key mapping source).
# BiQwen2 / BiQwen2.5 / BiGemma3 cannot resolve their own key mapping on transformers 5 (their
# from_pretrained reads a missing ``super()._checkpoint_conversion_mapping``); the matching
# Col* class's mapping (same backbone, same layouts) is passed instead.
CLASSES = {
    "colqwen2": ("ColQwen2", "ColQwen2Processor", None),
    "biqwen2": ("BiQwen2", "BiQwen2Processor", "ColQwen2"),
    "biqwen2_5": ("BiQwen2_5", "BiQwen2_5_Processor", "ColQwen2_5"),
    "colqwen2_5": ("ColQwen2_5", "ColQwen2_5_Processor", None),
    "colqwen3": ("ColQwen3", "ColQwen3Processor", None),
    "colpali": ("ColPali", "ColPaliProcessor", None),
    "colidefics3": ("ColIdefics3", "ColIdefics3Processor", None),
    "colmodernvbert": ("ColModernVBert", "ColModernVBertProcessor", None),
    "bimodernvbert": ("BiModernVBert", "BiModernVBertProcessor", None),
    "colqwen3_5": ("ColQwen3_5", "ColQwen3_5Processor", None),
    "biqwen3_5": ("BiQwen3_5", "BiQwen3_5Processor", "ColQwen3_5"),
    "colgemma3": ("ColGemma3", "ColGemmaProcessor3", None),
    "bigemma3": ("BiGemma3", "BiGemmaProcessor3", "ColGemma3"),
}


class Reference:
    """colpali-engine's model + processor for ``family`` loaded from ``path``."""

    def __init__(self, family: str, path: Path) -> None:
        import colpali_engine.models as models

        model_name, processor_name, mapping_from = CLASSES[family]
        kwargs: dict[str, Any] = {
            "torch_dtype": torch.float32,
            "attn_implementation": "eager",
            "device_map": "cpu",
        }
        if mapping_from is not None:
            kwargs["key_mapping"] = dict(getattr(models, mapping_from)._checkpoint_conversion_mapping)
        self.model = getattr(models, model_name).from_pretrained(str(path), **kwargs).eval()
        self.processor = getattr(models, processor_name).from_pretrained(str(path))

    @torch.no_grad()
    def run(self, batch: Any) -> list[torch.Tensor]:
        return unpad(self.model(**batch), batch["attention_mask"])

    def queries(self, queries: Sequence[str]) -> list[torch.Tensor]:
        return self.run(self.processor.process_queries(list(queries)))

    def pages(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        return self.run(self.processor.process_images(list(images)))

    def texts(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return self.run(self.processor.process_texts(list(texts)))

    def prompted_images(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """Images with caller-chosen prompts, batched exactly as ``process_images`` batches
        them (Qwen-VL processors pad ``pixel_values`` per image; colpali's models unpad them)."""
        batch = self.processor(
            text=list(prompts),
            images=[i.convert("RGB") for i in images],
            padding="longest",
            return_tensors="pt",
        )
        if "image_grid_thw" in batch:
            offsets = (batch["image_grid_thw"][:, 1] * batch["image_grid_thw"][:, 2]).tolist()
            pieces = list(torch.split(batch["pixel_values"], offsets))
            batch["pixel_values"] = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)
        return self.run(batch)

    def score(self, queries: list[torch.Tensor], documents: list[torch.Tensor]) -> torch.Tensor:
        """The reference score matrix, one document per call: colpali's multi-vector scorer
        zero-pads the documents of a batch, and a zero row would win the max wherever a
        query token's true similarities are all negative."""
        if queries[0].shape[0] == 1 and documents[0].shape[0] == 1:  # single-vector
            return self.processor.score([q[0] for q in queries], [d[0] for d in documents], device="cpu")
        return torch.cat([self.processor.score(queries, [d], device="cpu") for d in documents], dim=1)


# -- the checks every parity test runs ------------------------------------------------------


def check_queries(encoder: Any, reference: Reference) -> None:
    """One left-padded reference batch vs mmembed batched and one query at a time."""
    expected = reference.queries(parity.QUERIES)
    for batch_size in (len(parity.QUERIES), 1):
        parity.assert_embeddings_match(
            encoder.encode_queries(list(parity.QUERIES), batch_size=batch_size), expected
        )


def check_pages_and_scores(encoder: Any, reference: Reference) -> None:
    """Pages of three sizes (one reference batch; mmembed size-sorted into a mixed batch and
    a single), then the query x page score matrices and their rankings."""
    expected_pages = reference.pages(parity.pages())
    pages = encoder.encode_images(parity.pages(), batch_size=2)
    parity.assert_embeddings_match(pages, expected_pages)
    queries = encoder.encode_queries(list(parity.QUERIES))
    if encoder.info.kind == "single":
        got = torch.cat(queries) @ torch.cat(pages).T  # (queries, pages)
    else:
        from mmembed.scoring import maxsim

        got = maxsim(queries, pages)
    expected = reference.score(reference.queries(parity.QUERIES), expected_pages)
    assert got.shape == expected.shape
    assert parity.relative_error(got, expected) < parity.TOLERANCE
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))


def check_documents(encoder: Any, reference: Reference, interleaved_prompts: Sequence[str]) -> None:
    """Text-only and (image, text) documents mixed in one call vs the reference's
    ``process_texts`` and its model on the same interleaved prompts."""
    images = parity.pages()[1:]
    docs: list[Any] = [parity.TEXT_DOCUMENTS[0], (images[0], parity.CAPTIONS[0])]
    docs += [parity.TEXT_DOCUMENTS[1], (images[1], parity.CAPTIONS[1])]
    got = encoder.encode_documents(docs, batch_size=2)
    texts = reference.texts(parity.TEXT_DOCUMENTS)
    interleaved = reference.prompted_images(interleaved_prompts, images)
    parity.assert_embeddings_match(got, [texts[0], interleaved[0], texts[1], interleaved[1]])
    # The text-only document side (what the adapters' embed_documents use) is process_texts too.
    parity.assert_embeddings_match(
        encoder.encode_text_documents(list(parity.TEXT_DOCUMENTS), batch_size=2), texts
    )
