"""Shared fixtures of the LangChain adapter tests: sample PDFs and one index built from them.

The tiny random ColQwen2.5 (``tiny_colqwen2_5``, from ``tests/conftest.py``) gives
meaningless rankings, so these tests check plumbing: ids, counts, metadata, images,
that stored vectors are reused and that scores are the exact MaxSim of stored vectors.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# Low resolution keeps the tiny model fast; it does not change what is being tested.
DPI = 24


@pytest.fixture(scope="session")
def sample_pdfs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    return sorted(write_sample_pdfs(tmp_path_factory.mktemp("lc_pdfs")))


@pytest.fixture(scope="session")
def tiny_model(tiny_colqwen2_5: object) -> str:
    return str(tiny_colqwen2_5)


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory, sample_pdfs: list[Path], tiny_model: str) -> Path:
    """An index of every sample page, built once with core's indexing job."""
    import mmembed

    encoder = mmembed.load_encoder(tiny_model)
    path = tmp_path_factory.mktemp("lc_index") / "index"
    index = mmembed.open_index(path, encoder=encoder.info)
    try:
        report = mmembed.index_documents(sample_pdfs, index, encoder, dpi=DPI)
        assert report.pages_indexed >= 4 and not report.issues
    finally:
        index.close()
    return path


@pytest.fixture
def index_copy(built_index: Path, tmp_path: Path) -> Path:
    """A private copy of the shared index, for tests that write to it."""
    target = tmp_path / "index"
    shutil.copytree(built_index, target)
    return target
