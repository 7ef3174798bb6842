"""sentence-transformers v6 ``MultiVectorEncoder`` checkpoints (text ColBERT / PyLate style),
saved by sentence-transformers itself, against sentence-transformers at test time; then a
text-only index through the embedded index and the CLI.

Two pipelines: ``st_colbert`` ([Q]/[D] prompts, fixed query expansion with unattended
[MASK]s, a punctuation skiplist on documents) and ``st_minimal`` (no prompts, ``min``
expansion, attended, Dense + token Normalize, skiplist on both sides)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmembed.encoders import inspect_checkpoint, list_models, load_encoder, match_family
from mmembed.types import MMEmbedError
from mmembed_testing import parity

st = pytest.importorskip("sentence_transformers", reason="reference only: pip install sentence-transformers")

QUERIES = [
    "What is the revenue?",
    "solar capacity of european countries in 2023 compared with 2022, and the annual report of each segment!",
    "x",
]
DOCUMENTS = [
    "Table 2: operating expenses, net income and earnings per share for each segment.",
    "Figure 3",
    "The quarterly revenue grew by 12 percent in 2023 compared with 2022. " * 5,  # truncated
]
VARIANTS = ["st_colbert", "st_minimal"]


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request: pytest.FixtureRequest, tiny_checkpoint):
    path = tiny_checkpoint(request.param)
    reference = st.MultiVectorEncoder(str(path), device="cpu")
    return load_encoder(path, device="cpu", dtype="float32"), reference


@pytest.mark.parametrize("batch_size", [3, 1])
def test_queries_and_documents_match_sentence_transformers(pair, batch_size: int) -> None:
    encoder, reference = pair
    assert (encoder.info.family, encoder.info.kind, encoder.info.similarity) == (
        "st_multi_vector",
        "multi",
        "maxsim",
    )
    expected_q = [t.cpu() for t in reference.encode_query(QUERIES, batch_size=batch_size)]
    expected_d = [t.cpu() for t in reference.encode_document(DOCUMENTS, batch_size=batch_size)]
    queries = encoder.encode_queries(QUERIES, batch_size=batch_size)
    documents = encoder.encode_text_documents(DOCUMENTS, batch_size=batch_size)
    parity.assert_embeddings_match(queries, expected_q)
    parity.assert_embeddings_match(documents, expected_d)
    parity.assert_embeddings_match(encoder.encode_documents(DOCUMENTS, batch_size=batch_size), expected_d)
    from mmembed.scoring import maxsim

    assert (
        parity.relative_error(maxsim(queries, documents), reference.similarity(expected_q, expected_d)) < 1e-5
    )
    assert encoder.info.dim == expected_q[0].shape[1]


def test_images_are_refused_with_the_reason(pair) -> None:
    from PIL import Image

    encoder, _ = pair
    with pytest.raises(MMEmbedError, match="text-only"):
        encoder.encode_images([Image.new("RGB", (32, 32))])
    with pytest.raises(MMEmbedError, match="text-only"):
        encoder.encode_documents([Image.new("RGB", (32, 32))])


def test_dispatch_and_unsupported_modules(tiny_checkpoint, tmp_path: Path) -> None:
    path = tiny_checkpoint("st_colbert")
    assert match_family(inspect_checkpoint(path)).id == "st_multi_vector"
    assert "st_multi_vector" in {row["family"] for row in list_models()}
    odd = shutil.copytree(path, tmp_path / "pooled")
    modules = json.loads((odd / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Pool", "type": "some_package.TokenPooling"})
    (odd / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(MMEmbedError, match=r"some_package\.TokenPooling"):
        load_encoder(odd, device="cpu")


def test_text_only_index_through_the_cli(
    tiny_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PDF pages are indexed by their text layer; search runs through the embedded index."""
    from mmembed.cli import main
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    path = tiny_checkpoint("st_colbert")
    docs = tmp_path / "docs"
    docs.mkdir()
    for pdf in sorted(write_sample_pdfs(tmp_path / "pdfs"))[:2]:
        shutil.copy(pdf, docs)
    index = tmp_path / "idx"
    assert main(["index", str(docs), "--index", str(index), "--model", str(path), "-q", "--dpi", "24"]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(index), "solar capacity", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # The stored vectors are the page texts' document embeddings.
    import mmembed
    from mmembed.loaders.pdf_text import page_text

    encoder = load_encoder(path, device="cpu", dtype="float32")
    top = hits[0]
    expected = encoder.encode_text_documents([page_text(top["source"], top["page"])])[0]
    from mmembed.scoring import maxsim

    query = encoder.encode_queries(["solar capacity"])
    score = float(maxsim(query, [expected])[0, 0])
    assert abs(score - top["score"]) < 1e-3 * abs(score)  # the index may store float16
    assert mmembed.open_index(index, readonly=True).encoder.family == "st_multi_vector"


def test_text_only_index_reads_encrypted_pdfs_with_the_password(tiny_checkpoint, tmp_path: Path) -> None:
    """`--password` reaches the text layer a text-only model indexes (not only the renderer)."""
    import pikepdf

    import mmembed
    from mmembed.cli import main
    from mmembed.loaders.pdf_text import page_text
    from mmembed.loaders.sample_pdfs import write_sample_pdfs
    from mmembed.scoring import maxsim

    path = tiny_checkpoint("st_colbert")
    plain = sorted(write_sample_pdfs(tmp_path / "pdfs"))[0]
    locked = tmp_path / "locked.pdf"
    with pikepdf.open(plain) as pdf:
        pdf.save(locked, encryption=pikepdf.Encryption(user="s3cret", owner="owner"))
    index = tmp_path / "idx"
    argv = ["index", str(locked), "--index", str(index), "--model", str(path), "-q", "--dpi", "24"]
    assert main([*argv, "--password", "s3cret"]) == 0
    text = page_text(locked, 1, password="s3cret")
    assert text.strip()
    encoder = load_encoder(path, device="cpu", dtype="float32")
    with mmembed.open_index(index, readonly=True) as opened:
        record = next(r for r in opened.records() if r.page == 1)
        stored = opened.get_embeddings([record.id])[0]
    expected = encoder.encode_text_documents([text])[0]
    assert stored is not None and stored.shape == expected.shape
    query = encoder.encode_queries(["revenue"])
    score, want = float(maxsim(query, [stored])[0, 0]), float(maxsim(query, [expected])[0, 0])
    assert abs(score - want) < 1e-3 * abs(want)
