"""LangChain's own standard test suites (langchain-tests) against the adapter classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_mmembed import MMEmbedEmbeddings, MMEmbedRetriever


class _TinyModel:
    """Hands the session's tiny checkpoint to the suites' parameter properties.

    The suites read constructor parameters from properties, which cannot request
    fixtures; an autouse fixture stores the path on the test instance first.
    """

    _model_path: str

    @pytest.fixture(autouse=True)
    def _model(self, tiny_model: str) -> None:
        self._model_path = tiny_model


class _TinyIndex:
    """Same for the index built once from the sample PDFs."""

    _index_path: Path

    @pytest.fixture(autouse=True)
    def _index(self, built_index: Path) -> None:
        self._index_path = built_index


class TestMMEmbedEmbeddingsUnit(_TinyModel, EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[MMEmbedEmbeddings]:
        return MMEmbedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self._model_path}


class TestMMEmbedEmbeddingsIntegration(_TinyModel, EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[MMEmbedEmbeddings]:
        return MMEmbedEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self._model_path}


class TestMMEmbedRetrieverIntegration(_TinyIndex, RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[MMEmbedRetriever]:
        return MMEmbedRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"index": str(self._index_path), "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "solar panel efficiency"
