"""Storage options of the embedded index: int8 per-token scaled rows, token pooling at write
time (against colpali-engine's HierarchicalTokenPooler), the options recorded in the manifest
and checked on open, and the CLI (``index --storage/--pool``, ``info``, ``migrate``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmembed.cli import main
from mmembed.index import IndexOptionError, PageInput, open_index
from mmembed.index.codecs import codec
from mmembed.index.pooling import pool_tokens
from mmembed.types import EncoderInfo, MMEmbedError

DIM = 64
MULTI = EncoderInfo(name="test/storage", family="test", kind="multi", dim=DIM, similarity="maxsim")
SINGLE = EncoderInfo(name="test/single", family="test", kind="single", dim=DIM, similarity="cosine")


def _topical_pages(n: int, seed: int = 0) -> list[torch.Tensor]:
    """Unit-norm token vectors with structure: each page mixes a few of 40 topics (as a
    page's words share subjects), plus token-level noise."""
    g = torch.Generator().manual_seed(seed)
    topics = torch.nn.functional.normalize(torch.randn(40, DIM, generator=g), dim=1)
    pages = []
    for _ in range(n):
        tokens = int(torch.randint(20, 60, (1,), generator=g))
        mine = topics[torch.randint(0, 40, (4,), generator=g)]  # (4, dim)
        picks = mine[torch.randint(0, 4, (tokens,), generator=g)]  # (tokens, dim)
        pages.append(
            torch.nn.functional.normalize(
                picks + 0.6 * torch.randn(tokens, DIM, generator=g) / DIM**0.5, dim=1
            )
        )
    return pages


def _inputs(pages: list[torch.Tensor]) -> list[PageInput]:
    return [PageInput(p, f"doc{i % 7}.pdf", i + 1, f"{i % 7:064x}", {"i": i}) for i, p in enumerate(pages)]


def _queries(pages: list[torch.Tensor], n: int, seed: int = 1) -> list[torch.Tensor]:
    """Paraphrase-like queries: 12 noisy tokens of one page each."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        page = pages[(i * 7) % len(pages)]
        rows = page[torch.randint(0, page.shape[0], (12,), generator=g)]
        out.append(
            torch.nn.functional.normalize(rows + 0.3 * torch.randn(12, DIM, generator=g) / DIM**0.5, dim=1)
        )
    return out


# ---------------------------------------------------------------- int8 codec


def test_int8_rows_hold_values_and_their_scale() -> None:
    int8 = codec("int8")
    x = (
        np.random.default_rng(0).normal(size=(50, DIM)).astype(np.float32)
        * np.linspace(0.01, 20, 50)[:, None]
    )
    x[7] = 0.0  # an all-zero token stays zero
    raw = int8.encode(x)  # (50, dim + 4)
    assert raw.dtype == np.uint8 and raw.shape == (50, DIM + 4) and int8.row_bytes(DIM) == DIM + 4
    scale = np.abs(x).max(axis=1) / 127
    np.testing.assert_allclose(raw[:, DIM:].copy().view("<f4")[:, 0], scale, rtol=1e-6)
    decoded = int8.rows(torch.from_numpy(raw))[:].numpy()  # (50, dim)
    # Rounding to the nearest step: every value within half a step of its token's scale.
    assert (np.abs(decoded - x) <= scale[:, None] / 2 * (1 + 1e-5) + 1e-12).all()
    assert (decoded[7] == 0).all()
    gathered = int8.rows(torch.from_numpy(raw))[torch.tensor([3, 40, 3])]
    torch.testing.assert_close(gathered, torch.from_numpy(decoded[[3, 40, 3]]))


def test_int8_index_files_manifest_and_info(tmp_path: Path) -> None:
    pages = _topical_pages(20)
    with open_index(tmp_path / "ix", MULTI, storage="int8") as ix:
        ix.add(_inputs(pages))
        info = ix.info()
    tokens = sum(p.shape[0] for p in pages)
    (segment,) = (tmp_path / "ix" / "segments").iterdir()
    assert segment.suffix == ".i8" and segment.stat().st_size == tokens * (DIM + 4)
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert (manifest["dtype"], manifest["pooling"], manifest["format_version"]) == ("int8", 1, 2)
    assert info["storage"] == "int8" and info["bytes_per_token"] == DIM + 4
    assert info["bytes_per_page"] == round(tokens * (DIM + 4) / 20)


def test_int8_search_ranks_like_float32(tmp_path: Path) -> None:
    pages = _topical_pages(300)
    queries = _queries(pages, 40)
    results = {}
    for storage in ("float32", "int8"):
        with open_index(tmp_path / storage, MULTI, storage=storage) as ix:
            ix.add(_inputs(pages))
            results[storage] = ix.search(queries, k=10)
    recall = np.mean(
        [
            len({h.id for h in a} & {h.id for h in b}) / 10
            for a, b in zip(results["float32"], results["int8"], strict=True)
        ]
    )
    assert recall >= 0.98, recall
    for a, b in zip(results["float32"], results["int8"], strict=True):
        assert a[0].id == b[0].id
        assert b[0].score == pytest.approx(a[0].score, rel=5e-3)


def test_int8_survives_delete_and_compaction(tmp_path: Path) -> None:
    pages = _topical_pages(60)
    queries = _queries(pages, 5)
    with open_index(tmp_path / "ix", MULTI, storage="int8") as ix:
        ids = ix.add(_inputs(pages))
        kept = ix.get_embeddings(ids[1::2])
        ix.delete(ids[::2])
        before = ix.search(queries, k=5)
        assert ix.compact() == sum(p.shape[0] for p in pages[::2]) * (DIM + 4)  # bytes reclaimed
        after = ix.search(queries, k=5)
        for a, b in zip(before, after, strict=True):
            assert [h.id for h in a] == [h.id for h in b]
            torch.testing.assert_close([h.score for h in a], [h.score for h in b])
        for old, new in zip(kept, ix.get_embeddings(ids[1::2]), strict=True):
            assert old is not None and new is not None
            torch.testing.assert_close(old, new, rtol=0, atol=0)  # raw rows were copied, scales too
        live = sum(p.shape[0] for p in pages[1::2])
        (segment,) = (tmp_path / "ix" / "segments").iterdir()
        assert segment.suffix == ".i8" and segment.stat().st_size == live * (DIM + 4)


# ---------------------------------------------------------------- pooling


@pytest.mark.parametrize(("tokens", "factor"), [(7, 2), (40, 2), (41, 3), (100, 4)])
def test_pooling_matches_colpali_engine(tokens: int, factor: int) -> None:
    pooler_module = pytest.importorskip("colpali_engine.compression.token_pooling")
    page = _topical_pages(1, seed=tokens)[0]
    page = torch.cat([page] * (tokens // page.shape[0] + 1))[:tokens]  # repeated tokens: real ties
    page = torch.nn.functional.normalize(page + 0.01 * torch.randn(page.shape), dim=1)
    reference = pooler_module.HierarchicalTokenPooler()._pool_single_embedding(page, pool_factor=factor)[0]
    ours = torch.from_numpy(pool_tokens(page.numpy(), factor))
    assert ours.shape == reference.shape == (tokens // factor, DIM)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_pooling_keeps_magnitudes_of_unnormalised_tokens() -> None:
    x = np.array([[3.0, 0.0], [2.9, 0.1], [0.0, 1.0], [0.1, 1.0]], dtype=np.float32)
    pooled = pool_tokens(x, 2)  # two clear clusters
    norms = sorted(np.linalg.norm(pooled, axis=1).tolist())
    assert norms == pytest.approx(
        sorted([np.linalg.norm(x[2:], axis=1).mean(), np.linalg.norm(x[:2], axis=1).mean()])
    )
    assert pool_tokens(x[:1], 2).shape == (1, 2) and pool_tokens(x[:0], 2).shape == (0, 2)


def test_pooled_index_stores_fewer_vectors_and_finds_pages(tmp_path: Path) -> None:
    pages = _topical_pages(120)
    queries = _queries(pages, 20)
    with (
        open_index(tmp_path / "pooled", MULTI, pooling=2) as ix,
        open_index(tmp_path / "full", MULTI) as full,
    ):
        ids = ix.add(_inputs(pages))
        full.add(_inputs(pages))
        records = ix.get(ids)
        assert [r.n_vectors for r in records if r] == [max(p.shape[0] // 2, 1) for p in pages]
        stored = ix.get_embeddings(ids[:3])
        for page, vectors in zip(pages, stored, strict=False):
            assert vectors is not None
            torch.testing.assert_close(
                vectors, torch.from_numpy(pool_tokens(page.numpy(), 2)), atol=2e-3, rtol=2e-3
            )
        exact = full.search(queries, k=10)
        pooled = ix.search(queries, k=10)
        recall = np.mean(
            [len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(exact, pooled, strict=True)]
        )
        assert recall >= 0.8, recall
        assert ix.info()["bytes_per_page"] < 0.55 * full.info()["bytes_per_page"]
    manifest = json.loads((tmp_path / "pooled" / "manifest.json").read_text())
    assert (manifest["pooling"], manifest["format_version"]) == (2, 2)


def test_pooling_without_scipy_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.cluster", None)  # import fails as if scipy were absent
    with open_index(tmp_path / "ix", MULTI, pooling=2) as ix:
        with pytest.raises(MMEmbedError, match=r"mmembed-core\[pooling\]"):
            ix.add(_inputs(_topical_pages(2)))
        assert ix.count() == 0


# ---------------------------------------------------------------- options


def test_options_apply_at_creation_and_are_checked_after(tmp_path: Path) -> None:
    open_index(tmp_path / "ix", MULTI, storage="int8", pooling=3).close()
    with open_index(tmp_path / "ix") as ix:  # no options: the stored ones
        assert (ix.storage, ix.pooling) == ("int8", 3)
    with open_index(tmp_path / "ix", dtype="float16") as ix:  # the older name: creation only
        assert ix.storage == "int8"
    with pytest.raises(IndexOptionError, match=r"storage='int8', not storage='float16'"):
        open_index(tmp_path / "ix", MULTI, storage="float16")
    with pytest.raises(IndexOptionError, match=r"pooling=3, not pooling=2.*mmembed migrate"):
        open_index(tmp_path / "ix", MULTI, pooling=2)
    with open_index(tmp_path / "ix", shared=True) as first:  # the shared path checks an open entry too
        with pytest.raises(IndexOptionError, match="pooling"):
            open_index(tmp_path / "ix", pooling=4, shared=True)
        assert first.pooling == 3 and first.storage == "int8"
    with pytest.raises(MMEmbedError, match="multi-vector indexes only"):
        open_index(tmp_path / "single", SINGLE, pooling=2)
    with pytest.raises(MMEmbedError, match="pooling must be 2, 3 or 4"):
        open_index(tmp_path / "other", MULTI, pooling=8)
    with pytest.raises(MMEmbedError, match="unknown index storage 'int4'"):
        open_index(tmp_path / "other", MULTI, storage="int4")
    assert not (tmp_path / "single").exists() and not (tmp_path / "other").exists()


def test_an_index_without_the_pooling_field_reads_as_unpooled(tmp_path: Path) -> None:
    with open_index(tmp_path / "ix", MULTI) as ix:
        ix.add(_inputs(_topical_pages(3)))
    manifest = tmp_path / "ix" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["pooling"]  # as written before pooling existed
    manifest.write_text(json.dumps(data))
    with open_index(tmp_path / "ix", MULTI, pooling=1) as ix:
        assert ix.pooling == 1 and ix.count() == 3


# ---------------------------------------------------------------- CLI


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _info(capsys: pytest.CaptureFixture[str], index: Path) -> dict[str, object]:
    code, out, _ = _run(capsys, "info", "--index", str(index), "--json")
    assert code == 0
    return dict(json.loads(out))


def test_cli_index_info_and_migrate_keep_the_options(
    tmp_path: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    docs = tmp_path / "docs"
    docs.mkdir()
    write_sample_pdfs(docs)
    for extra in sorted(docs.iterdir())[1:]:  # one document is enough for the plumbing
        shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    index = tmp_path / "idx"
    argv = ["index", str(docs), "--index", str(index), "--model", str(tiny_colqwen2_5), "-q", "--dpi", "48"]
    code, out, _ = _run(capsys, *argv, "--storage", "int8", "--pool", "2")
    assert code == 0, out
    info = _info(capsys, index)
    assert (info["storage"], info["pooling"], info["bytes_per_token"]) == ("int8", 2, 128 + 4)
    assert isinstance(info["bytes_per_page"], int) and info["bytes_per_page"] > 0
    code, out, _ = _run(capsys, "info", "--index", str(index))
    assert "bytes_per_page" in out and "int8" in out

    with open_index(index, readonly=True) as ix:
        source_vectors = {r.id: r.n_vectors for r in ix.records()}
    code, _, _ = _run(capsys, "migrate", "--from", str(index), "--to", str(tmp_path / "copy"))
    assert code == 0
    with open_index(tmp_path / "copy", readonly=True) as copy:
        assert (copy.storage, copy.pooling) == ("int8", 2)
        assert {r.id: r.n_vectors for r in copy.records()} == source_vectors  # not pooled twice
    code, _, _ = _run(
        capsys, "migrate", "--from", str(index), "--to", str(tmp_path / "f32"), "--storage", "float32"
    )
    assert code == 0 and _info(capsys, tmp_path / "f32")["storage"] == "float32"
    code, _, err = _run(capsys, "migrate", "--from", str(index), "--to", str(tmp_path / "p3"), "--pool", "3")
    assert code != 0 and "pooled by 2" in err and not (tmp_path / "p3").exists()
    code, _, err = _run(capsys, *argv, "--storage", "float16")  # an existing index keeps its storage
    assert code != 0 and "storage='int8'" in err


def test_maxsim_with_row_scales_scores_int8_rows_like_their_decoded_floats() -> None:
    from mmembed.index.codecs import Int8Rows
    from mmembed.scoring import Ragged, maxsim

    int8 = codec("int8")
    pages = _topical_pages(12)
    raw = torch.from_numpy(int8.encode(torch.cat(pages).numpy()))  # (tokens, dim + 4)
    offsets = torch.tensor([0, *np.cumsum([p.shape[0] for p in pages])])
    values, scales = Int8Rows(raw).quantized(slice(0, raw.shape[0]))
    queries = _queries(pages, 3)
    got = maxsim(queries, Ragged(values, offsets), row_scales=scales, max_chunk_bytes=1 << 16)
    want = maxsim(queries, Ragged(Int8Rows(raw)[:], offsets))  # float32 decode, then score
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(MMEmbedError, match="row_scales"):
        maxsim(queries, Ragged(values.float(), offsets), row_scales=scales)
