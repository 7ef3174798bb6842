"""Real checkpoints from the Hub: retrieval that means something.

Skipped by default (``-m 'not gpu and not network'`` in the root pytest config): they need
hub access to download the weights, and the large ones a GPU. Run them with
``pytest -m network tests/core/test_real_models.py`` (add ``gpu`` for the 3B+ models).
Each indexes the three sample PDFs and checks that each topic's question finds its document
first — a check a random model passes by chance only 1 time in 27.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mmembed
from mmembed.loaders.sample_pdfs import write_sample_pdfs

QUESTIONS = {
    "How much solar photovoltaic capacity was installed each year?": "solar_energy_report.pdf",
    "Which ingredients go into the tomato soup?": "mediterranean_cookbook.pdf",
    "How did quarterly revenue develop?": "quarterly_financial_report.pdf",
}

SMALL = ["vidore/colSmol-256M", "vidore/colSmol-500M"]
LARGE = [
    "vidore/colqwen2.5-v0.2",
    "nomic-ai/colnomic-embed-multimodal-3b",
    "nomic-ai/nomic-embed-multimodal-3b",
    "vidore/colqwen2-v1.0",
    "vidore/colpali-v1.3",
    "llamaindex/vdr-2b-multi-v1",
    "vidore/colqwen2-v1.0-hf",
    "vidore/colpali-v1.3-hf",
    "nvidia/nemotron-colembed-vl-4b-v2",
    "nvidia/nemotron-colembed-vl-8b-v2",
]
REMOTE_CODE = [
    "nvidia/llama-nemotron-colembed-vl-3b-v2",
    "nvidia/llama-nemoretriever-colembed-3b-v1",
    "nvidia/llama-nemoretriever-colembed-1b-v1",
]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("samples")
    write_sample_pdfs(folder)
    return folder


def check_topic_retrieval(model: str, sample_dir: Path, index_dir: Path) -> None:
    encoder = mmembed.load_encoder(model)
    with mmembed.open_index(index_dir, encoder=encoder.info) as index:
        report = mmembed.index_documents(sample_dir, index, encoder, batch_size=2)
        assert report.pages_indexed == 9 and not report.issues
        retriever = mmembed.Retriever(index, encoder)
        hits = retriever.search(list(QUESTIONS), k=1)
    for (question, expected), top in zip(QUESTIONS.items(), hits, strict=True):
        assert Path(top[0].source).name == expected, f"{model}: {question!r} -> {top[0].source}"


@pytest.mark.network
@pytest.mark.parametrize("model", SMALL)
def test_small_real_checkpoints_retrieve_by_topic(model: str, sample_dir: Path, tmp_path: Path) -> None:
    check_topic_retrieval(model, sample_dir, tmp_path / "idx")


@pytest.mark.network
@pytest.mark.gpu
@pytest.mark.parametrize("model", LARGE)
def test_large_real_checkpoints_retrieve_by_topic(model: str, sample_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    check_topic_retrieval(model, sample_dir, tmp_path / "idx")


@pytest.mark.network
@pytest.mark.parametrize("model", REMOTE_CODE)
def test_remote_code_checkpoints_are_refused_without_the_opt_in(model: str) -> None:
    """Only their config is downloaded: the refusal comes before any weight or code."""
    from mmembed.encoders.remote_code import RemoteCodeError

    with pytest.raises(RemoteCodeError, match="trust_remote_code=True"):
        mmembed.load_encoder(model)


@pytest.mark.network
@pytest.mark.gpu
@pytest.mark.parametrize("model", REMOTE_CODE)
def test_remote_code_checkpoints_retrieve_by_topic_on_opt_in(
    model: str, sample_dir: Path, tmp_path: Path
) -> None:
    """Needs the environment their code was written for (transformers 4.49 + flash-attn, a GPU)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    if not torch.cuda.is_available() or int(transformers.__version__.split(".")[0]) >= 5:
        pytest.skip("needs a CUDA GPU and the transformers 4.49 environment of the checkpoint's code")
    encoder = mmembed.load_encoder(model, trust_remote_code=True)
    with mmembed.open_index(tmp_path / "idx", encoder=encoder.info) as index:
        mmembed.index_documents(sample_dir, index, encoder, batch_size=2)
        hits = mmembed.Retriever(index, encoder).search(list(QUESTIONS), k=1)
    for (question, expected), top in zip(QUESTIONS.items(), hits, strict=True):
        assert Path(top[0].source).name == expected, f"{model}: {question!r} -> {top[0].source}"
