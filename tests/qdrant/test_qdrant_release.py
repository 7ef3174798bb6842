"""An adapter dropped without ``close()`` lets go of a Qdrant local store or qdrant-edge
folder when it is garbage-collected, like core's index handles: another process can open
the folder afterwards."""

from __future__ import annotations

import fcntl
import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import mmembed
from mmembed.cli import main
from mmembed.loaders.sample_pdfs import write_sample_pdfs

QUERY = "quarterly revenue table"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, tiny_colqwen2_5: Path) -> str:
    root = tmp_path_factory.mktemp("qdrant_release")
    pdfs = write_sample_pdfs(root / "pdfs")[:1]
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    with mmembed.open_index(root / "local", encoder.info) as index:
        assert mmembed.index_documents(pdfs, index, encoder, dpi=24, progress=False).ok
    return str(root / "local")


def lock_is_free(lock_file: Path) -> bool:
    """Whether another process could take the folder's lock now: ``flock`` locks belong to an
    open file description, so a fresh descriptor in this process conflicts like another
    process would."""
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def langchain(uri: str) -> Any:
    from langchain_mmembed import MMEmbedRetriever

    retriever = MMEmbedRetriever(index=uri, k=2, image="none")
    assert retriever.invoke(QUERY)
    return retriever


def llamaindex(uri: str) -> Any:
    from llama_index.retrievers.mmembed import MMEmbedRetriever

    retriever = MMEmbedRetriever(index=uri, similarity_top_k=2)
    assert retriever.retrieve(QUERY)
    return retriever


def haystack(uri: str) -> Any:
    from haystack_integrations.document_stores.mmembed import MMEmbedDocumentStore

    store = MMEmbedDocumentStore(uri)
    assert store.count_documents() > 0
    return store


@pytest.mark.parametrize("scheme", ["qdrant", "qdrant-edge"])
@pytest.mark.parametrize("adapter", [langchain, llamaindex, haystack])
def test_a_dropped_adapter_releases_the_folder(
    folder: str, tmp_path: Path, scheme: str, adapter: Callable[[str], Any]
) -> None:
    if scheme == "qdrant-edge":
        pytest.importorskip("qdrant_edge")
        uri, lock = f"qdrant-edge://{tmp_path}/edge", tmp_path / "edge" / "mmembed-edge.lock"
    else:
        uri, lock = f"qdrant://{tmp_path}/store/pages", tmp_path / "store" / ".lock"
    assert main(["migrate", "--from", folder, "--to", uri]) == 0
    assert lock_is_free(lock)
    held = adapter(uri)
    assert not lock_is_free(lock)  # one process per folder while it is open
    del held
    gc.collect()
    assert lock_is_free(lock)
