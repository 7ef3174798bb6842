"""Session fixtures shared by the whole suite: tiny random checkpoints, built once.

``tiny_colqwen2_5`` is a full ColQwen2.5 checkpoint folder (layout of the published
ones, ~3 MB, random weights); ``tiny_colqwen2_5_lora`` is a PEFT LoRA adapter folder over
its own tiny base. Both load with ``mmembed.encoders.load_encoder(path)`` exactly like a
real checkpoint would; embeddings are meaningless but deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_colqwen2_5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    return make_tiny_checkpoint("colqwen2_5", tmp_path_factory.mktemp("tiny") / "colqwen2.5-tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_colqwen2_5_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    return make_tiny_checkpoint("colqwen2_5", tmp_path_factory.mktemp("tiny_lora"), seed=1, lora=True)


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
