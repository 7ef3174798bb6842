"""Distributed indexing on a local Ray cluster (2 CPUs, one cluster for the module) with the
tiny ColQwen2.5: the result equals the single-process pipeline's index, bad files are
reported the same way, a re-run (through the CLI) skips what is committed; and encoder
actors upserting in parallel into one Qdrant store (qdrant-edge), one of them killed
mid-run, leave no page missing or duplicated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import torch

import mmembed
from mmembed.index import IndexBackend, open_backend, open_index
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.pipeline import IndexReport

ray = pytest.importorskip("ray")
from mmembed_ray import index_documents  # noqa: E402
from mmembed_ray.pipeline import allows_concurrent_writers  # noqa: E402

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
    pdfs = write_sample_pdfs(folder)
    pdfs[-1].unlink()  # two PDFs, six pages: enough batches to kill a worker between them
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    (folder / "notes.txt").write_text("not a page")
    return folder


@pytest.fixture(scope="module")
def single_process(
    corpus: Path, tiny_colqwen2_5: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, IndexReport]:
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5))
    path = tmp_path_factory.mktemp("single") / "index"
    with open_index(path, encoder.info) as index:
        report = mmembed.index_documents(corpus, index, encoder, dpi=DPI, batch_size=2)
    return path, report


def assert_same_index(got: IndexBackend, reference: Path) -> None:
    with open_index(reference, create=False, readonly=True) as expected:
        ids = sorted(r.id for r in expected.records())
        stored = sorted(r.id for r in got.records())
        assert stored == ids, f"missing {set(ids) - set(stored)}, extra {set(stored) - set(ids)}"
        assert got.count() == len(ids)  # no duplicate
        assert got.get(ids) == expected.get(ids)  # records, metadata, thumbnails
        for a, b in zip(got.get_embeddings(ids), expected.get_embeddings(ids), strict=True):
            assert a is not None and b is not None
            torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)  # float16 storage


def test_ray_index_equals_the_single_process_index_and_reports_bad_files(
    ray_cluster: None,
    corpus: Path,
    single_process: tuple[Path, IndexReport],
    tiny_colqwen2_5: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mmembed.cli import main

    reference, expected_report = single_process
    path = tmp_path / "index"
    report = index_documents(corpus, str(path), str(tiny_colqwen2_5), dpi=DPI, batch_size=2)
    assert report.pages_indexed == expected_report.pages_indexed
    assert sorted(map(str, report.issues)) == sorted(map(str, expected_report.issues))
    assert any("broken.pdf" in str(i) for i in report.issues)
    with open_index(path, create=False, readonly=True) as got:
        assert_same_index(got, reference)
    # the CLI's --ray re-run skips every committed file
    argv = [
        "index",
        str(corpus),
        "--index",
        str(path),
        "--model",
        str(tiny_colqwen2_5),
        "--ray",
        "--dpi",
        str(DPI),
    ]
    assert main(argv) == 0
    files = len(expected_report.files_indexed)
    assert f"indexed 0 page(s) from 0 file(s); {files} unchanged file(s) skipped" in capsys.readouterr().out


def _encoder_workers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "MapBatches(_Encode)" in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_parallel_encoder_writes_with_a_worker_killed_mid_run_leave_no_missing_or_duplicate_page(
    ray_cluster: None,
    corpus: Path,
    single_process: tuple[Path, IndexReport],
    tiny_colqwen2_5: Path,
    tmp_path: Path,
) -> None:
    """Two encoder actors upsert their own batches into one qdrant-edge store (each holding
    it while it writes one batch: the engine allows one process at a time); one is killed
    by SIGKILL after the first pages are committed. Ray retries its batch in a new actor."""
    reference, expected_report = single_process
    uri = f"qdrant-edge://{tmp_path / 'edge'}"
    killed: list[int] = []  # pages committed when the worker was killed

    def kill_once_pages_are_committed(committed: int) -> None:
        workers = _encoder_workers()
        if committed and workers and not killed:
            workers[0].kill()  # SIGKILL: no cleanup, as when a node dies
            killed.append(committed)

    report = index_documents(
        corpus,
        uri,
        str(tiny_colqwen2_5),
        dpi=DPI,
        batch_size=1,
        encoders=2,
        cpus_per_encoder=0.5,  # two actors and the render tasks on 2 CPUs
        writers="encoders",
        on_batch=kill_once_pages_are_committed,
    )
    assert killed, "the encoder worker was never killed"
    assert killed[0] < expected_report.pages_indexed, "killed after the last page: not mid-run"
    assert sorted(map(str, report.issues)) == sorted(map(str, expected_report.issues))
    assert sorted(report.ids) == sorted(expected_report.ids)
    with open_backend(uri, create=False) as got:
        assert_same_index(got, reference)


@pytest.mark.parametrize(
    ("index", "parallel"),
    [
        ("qdrant://db:6333/pages", True),
        ("qdrants://cluster.example/pages", True),
        ("qdrant:///srv/store/pages", False),  # local mode: one process per folder
        ("qdrant-edge:///srv/edge", False),
        ("/srv/index", False),
    ],
)
def test_encoder_actors_write_by_default_only_into_a_qdrant_server(index: str, parallel: bool) -> None:
    assert allows_concurrent_writers(index) is parallel


def test_every_loading_and_model_option_reaches_the_workers(
    ray_cluster: None,
    corpus: Path,
    tiny_colqwen2_5: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`mmembed index --ray` passes --max-pixels, --strict and the family options (--option) to
    the workers: the index the single-process pipeline builds with the same arguments."""
    from mmembed.cli import main
    from mmembed.loaders import LoadError

    pdf = next(p for p in sorted(corpus.glob("*.pdf")) if p.name != "broken.pdf")
    options = {"max_num_visual_tokens": 16}
    encoder = mmembed.load_encoder(str(tiny_colqwen2_5), **options)
    reference = tmp_path / "reference"
    with open_index(reference, encoder.info) as index:
        mmembed.index_documents([pdf], index, encoder, dpi=96, max_pixels=60_000, progress=False)
    path = tmp_path / "index"
    argv = ["index", str(pdf), "--index", str(path), "--model", str(tiny_colqwen2_5), "--ray", "-q"]
    argv += ["--dpi", "96", "--max-pixels", "60000", "--option", "max_num_visual_tokens=16"]
    assert main(argv) == 0
    assert f"index {path} now holds 3 page(s)" in capsys.readouterr().out
    with open_index(path, create=False, readonly=True) as got:
        assert_same_index(got, reference)
        assert max(r.n_vectors for r in got.records()) < 64  # the visual-token budget held on the actors
    with pytest.raises(LoadError, match=r"broken\.pdf"):
        index_documents(corpus, str(tmp_path / "strict"), str(tiny_colqwen2_5), dpi=DPI, strict=True)
    argv = ["index", str(corpus), "--index", str(tmp_path / "media"), "--model", str(tiny_colqwen2_5)]
    with pytest.raises(SystemExit) as usage:  # a usage error: exit 2
        main([*argv, "--ray", "--fps", "4"])
    assert usage.value.code == 2 and "--fps are not passed to --ray workers" in capsys.readouterr().err


def test_encoders_that_take_every_cpu_are_refused_before_the_run() -> None:
    from mmembed.types import MMEmbedError
    from mmembed_ray.pipeline import check_resources

    with pytest.raises(
        MMEmbedError, match=r"2 encoder actor\(s\) x 1 CPU take 2 of the Ray cluster's 2 CPU.*encoders=1"
    ):
        check_resources({"CPU": 2.0}, 2, 1.0, 0.0)
    with pytest.raises(MMEmbedError, match="the Ray cluster has 0"):
        check_resources({"CPU": 8.0}, 1, 1.0, 1.0)
    check_resources({"CPU": 2.0}, 1, 1.0, 0.0)  # one CPU left to render
    check_resources({"CPU": 2.0}, 2, 0.5, 0.0)
