"""Distributed indexing on a local Ray cluster (2 CPUs) with the tiny ColQwen2.5: the
result equals the single-process pipeline's index, bad files are reported the same way,
and an encoder worker killed mid-run leaves no page missing or duplicated."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import torch

import mmembed
from mmembed.index import open_index
from mmembed.loaders.sample_pdfs import write_sample_pdfs

ray = pytest.importorskip("ray")
from mmembed_ray import index_documents  # noqa: E402

DPI = 24
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray_docs")
    write_sample_pdfs(folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    (folder / "notes.txt").write_text("not a page")
    return folder


@pytest.fixture(scope="module")
def single_process(corpus: Path, tiny_colqwen2_5: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    path = tmp_path_factory.mktemp("single") / "index"
    with open_index(path, encoder.info) as index:
        report = mmembed.index_documents(corpus, index, encoder, dpi=DPI, batch_size=2)
    return path, report


def assert_same_index(path: Path, reference: Path) -> None:
    with (
        open_index(path, create=False, readonly=True) as got,
        open_index(reference, create=False, readonly=True) as expected,
    ):
        ids = sorted(r.id for r in expected.records())
        assert sorted(r.id for r in got.records()) == ids and got.count() == len(ids)  # no duplicate
        assert got.get(ids) == expected.get(ids)  # records, metadata, thumbnails
        for a, b in zip(got.get_embeddings(ids), expected.get_embeddings(ids), strict=True):
            assert a is not None and b is not None
            torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)  # float16 storage


def test_ray_index_equals_the_single_process_index_and_reports_bad_files(
    ray_cluster: None,
    corpus: Path,
    single_process,
    tiny_colqwen2_5: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    reference, expected_report = single_process
    report = index_documents(corpus, str(tmp_path / "index"), str(tiny_colqwen2_5), dpi=DPI, batch_size=2)
    assert report.pages_indexed == expected_report.pages_indexed
    assert sorted(map(str, report.issues)) == sorted(map(str, expected_report.issues))
    assert any("broken.pdf" in str(i) for i in report.issues)
    assert_same_index(tmp_path / "index", reference)
    again = index_documents(corpus, str(tmp_path / "index"), str(tiny_colqwen2_5), dpi=DPI)
    assert again.pages_indexed == 0 and len(again.files_unchanged) == len(expected_report.files_indexed)


def _encoder_workers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "MapBatches(_Encode)" in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_a_worker_killed_mid_run_leaves_no_missing_or_duplicate_page(
    ray_cluster: None,
    corpus: Path,
    single_process,
    tiny_colqwen2_5: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    reference, _ = single_process
    path = tmp_path / "index"
    killed: list[int] = []  # pages committed when the worker was killed

    def kill_once_pages_are_committed() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            try:
                with open_index(path, create=False, readonly=True) as index:
                    committed = index.count()
            except mmembed.MMEmbedError:
                committed = 0
            workers = _encoder_workers()
            if committed and workers:
                workers[0].kill()  # SIGKILL: no cleanup, as when a node dies
                killed.append(committed)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_pages_are_committed, daemon=True)
    killer.start()
    index_documents(corpus, str(path), str(tiny_colqwen2_5), dpi=DPI, batch_size=1)
    killer.join()
    assert killed, "the encoder worker was never killed"
    with open_index(reference, create=False, readonly=True) as expected:
        assert killed[0] < expected.count(), "killed after the last page: not mid-run"
    assert_same_index(path, reference)


def test_cli_ray_into_qdrant(
    ray_cluster: None,
    corpus: Path,
    single_process,
    tiny_colqwen2_5: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from mmembed.cli import main
    from mmembed_qdrant import QdrantIndex

    reference, _ = single_process
    uri = f"qdrant://{tmp_path}/store/pages"
    argv = ["index", str(corpus), "--index", uri, "--model", str(tiny_colqwen2_5), "--ray", "--dpi", str(DPI)]
    assert main(argv) == 0  # bad files are reported, the good pages indexed
    with (
        QdrantIndex.connect("pages", path=tmp_path / "store") as got,
        open_index(reference, create=False, readonly=True) as expected,
    ):
        ids = sorted(r.id for r in expected.records())
        assert sorted(r.id for r in got.records()) == ids
        for a, b in zip(got.get_embeddings(ids), expected.get_embeddings(ids), strict=True):
            assert a is not None and b is not None
            torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
