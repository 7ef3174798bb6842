"""mmembed's ColQwen2.5 against the reference, colpali-engine 0.3.18, on tiny checkpoints.

Both sides run float32 on CPU with eager attention. Compared: per-input query and page
embeddings (same number of vectors, relative error < 1e-4) for a merged checkpoint and a
LoRA adapter over a base, with queries of different lengths (left padding) and pages of
different sizes in one batch, and the resulting MaxSim score matrices.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import mmembed
from mmembed.encoders import load_encoder
from mmembed.scoring import maxsim

colpali_models = pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)

TOLERANCE = 1e-4
QUERIES = [
    "revenue",
    "What is the organizational structure of the research and development department?",
    "Table 2: net income 2023",
    "Quelle est la consommation d'énergie en Europe ?",
]


def _pages() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    text_page = Image.new("RGB", (612, 792), "white")
    draw = ImageDraw.Draw(text_page)
    for row in range(20):
        draw.text((40, 30 + 36 * row), f"Line {row}: quarterly revenue and operating expenses", fill="black")
    noise = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((300, 200), (200, 560))
    ]
    small = Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))  # scaled up to min_pixels
    return [text_page, noise[0], small, noise[1]]


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


class Reference:
    """colpali-engine's model + processor, returning per-input unpadded float32 tensors."""

    def __init__(self, path: Path) -> None:
        self.model = colpali_models.ColQwen2_5.from_pretrained(
            str(path), torch_dtype=torch.float32, attn_implementation="eager", device_map="cpu"
        ).eval()
        self.processor = colpali_models.ColQwen2_5_Processor.from_pretrained(str(path))

    @torch.no_grad()
    def _run(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        out = self.model(**batch)  # (batch, tokens, dim), zeros at padding
        mask = batch["attention_mask"].bool()
        return [out[i][mask[i]] for i in range(out.shape[0])]

    def queries(self, queries: list[str]) -> list[torch.Tensor]:
        return self._run(self.processor.process_queries(queries))

    def pages(self, images: list[Image.Image]) -> list[torch.Tensor]:
        return self._run(self.processor.process_images(images))


@pytest.fixture(scope="module", params=["merged", "lora"])
def checkpoint(request: pytest.FixtureRequest) -> Path:
    name = "tiny_colqwen2_5" if request.param == "merged" else "tiny_colqwen2_5_lora"
    return Path(request.getfixturevalue(name))


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> Reference:
    return Reference(checkpoint)


@pytest.fixture(scope="module")
def encoder(checkpoint: Path) -> mmembed.encoders.Encoder:
    return load_encoder(checkpoint, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def pages() -> list[Image.Image]:
    return _pages()


@pytest.fixture(scope="module")
def reference_queries(reference: Reference) -> list[torch.Tensor]:
    return reference.queries(QUERIES)  # one left-padded batch of different lengths


@pytest.fixture(scope="module")
def reference_pages(reference: Reference, pages: list[Image.Image]) -> list[torch.Tensor]:
    return reference.pages(pages)  # one batch of four page sizes


@pytest.mark.parametrize("batch_size", [len(QUERIES), 1])
def test_query_embeddings_match_reference(
    encoder: mmembed.encoders.Encoder, reference_queries: list[torch.Tensor], batch_size: int
) -> None:
    expected = reference_queries
    got = encoder.encode_queries(QUERIES, batch_size=batch_size)
    assert len(got) == len(expected)
    for ours, ref in zip(got, expected, strict=True):
        assert ours.shape == ref.shape and ours.dtype == torch.float32 and ours.device.type == "cpu"
        assert _relative_error(ours, ref) < TOLERANCE


def test_page_embeddings_match_reference(
    encoder: mmembed.encoders.Encoder, reference_pages: list[torch.Tensor], pages: list[Image.Image]
) -> None:
    expected = reference_pages
    got = encoder.encode_images(pages, batch_size=3)  # size-sorted: two batches, both mixed sizes
    assert len({e.shape[0] for e in expected}) == len(pages)  # really mixed sizes
    for ours, ref in zip(got, expected, strict=True):
        assert ours.shape == ref.shape
        assert _relative_error(ours, ref) < TOLERANCE


def test_scores_match_reference(
    encoder: mmembed.encoders.Encoder,
    reference: Reference,
    reference_queries: list[torch.Tensor],
    reference_pages: list[torch.Tensor],
    pages: list[Image.Image],
) -> None:
    # One page per call: colpali's score_multi_vector zero-pads the pages of a batch and a
    # zero row then wins the max wherever a query token's true similarities are all negative.
    expected = torch.cat(
        [reference.processor.score(reference_queries, [p], device="cpu") for p in reference_pages], dim=1
    )
    got = maxsim(encoder.encode_queries(QUERIES), encoder.encode_images(pages))
    assert got.shape == (len(QUERIES), len(pages))
    assert _relative_error(got, expected) < TOLERANCE
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))


def test_lora_adapter_changes_the_embeddings(tiny_colqwen2_5_lora: Path, pages: list[Image.Image]) -> None:
    """The adapter parity above only means something if the adapter is not a no-op."""
    adapted = load_encoder(tiny_colqwen2_5_lora, device="cpu", dtype="float32")
    base = load_encoder(tiny_colqwen2_5_lora.parent / "colqwen2.5-tiny-base", device="cpu", dtype="float32")
    a, b = adapted.encode_images(pages[:1])[0], base.encode_images(pages[:1])[0]
    assert a.shape == b.shape
    assert float((a * b).sum(dim=-1).mean()) < 0.95  # cosine: clearly different vectors


def test_mmembed_never_imports_colpali_engine() -> None:
    source = Path(mmembed.__file__).parent
    for file in source.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "colpali_engine" for n in names), file
