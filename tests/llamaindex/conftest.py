"""Shared fixtures of the LlamaIndex adapter tests: sample PDFs, bad files, one built index.

The tiny random ColQwen2.5 (``tiny_colqwen2_5``, from ``tests/conftest.py``) gives
meaningless rankings, so these tests check plumbing: ids, counts, metadata, images, that
stored vectors are reused, and that scores are exactly what core computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmembed.encoders.base import Encoder
from mmembed.index import LocalIndex

# Low resolution keeps the tiny model fast; it does not change what is being tested.
DPI = 48


@pytest.fixture(scope="session")
def pdf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    folder = tmp_path_factory.mktemp("li_pdfs")
    write_sample_pdfs(folder)
    return folder


@pytest.fixture(scope="session")
def sample_pdfs(pdf_folder: Path) -> list[Path]:
    return sorted(pdf_folder.glob("*.pdf"))


@pytest.fixture(scope="session")
def tiny_model(tiny_colqwen2_5: object) -> str:
    return str(tiny_colqwen2_5)


@pytest.fixture(scope="session")
def encoder(tiny_model: str) -> Encoder:
    import mmembed

    return mmembed.load_encoder(tiny_model)


@pytest.fixture(scope="session")
def built_index(tmp_path_factory: pytest.TempPathFactory, sample_pdfs: list[Path], encoder: Encoder) -> Path:
    """An index of every sample page except the last PDF's (kept unseen for the reranker)."""
    import mmembed

    path = tmp_path_factory.mktemp("li_index") / "index"
    with mmembed.open_index(path, encoder=encoder.info) as index:
        report = mmembed.index_documents(sample_pdfs[:-1], index, encoder, dpi=DPI)
        assert report.pages_indexed >= 4 and not report.issues
    return path


@pytest.fixture(scope="session")
def unseen_pdf(sample_pdfs: list[Path]) -> Path:
    """A sample PDF that is not in ``built_index``."""
    return sample_pdfs[-1]


@pytest.fixture
def open_index(built_index: Path, encoder: Encoder) -> Iterator[LocalIndex]:
    import mmembed

    index = mmembed.open_index(built_index, encoder=encoder.info, readonly=True)
    yield index
    index.close()
