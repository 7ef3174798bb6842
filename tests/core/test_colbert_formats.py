"""ColBERT text checkpoints in PyLate's and Stanford ColBERT's own formats, loaded as saved.

References: PyLate 1.6's ``ColBERT.encode`` (its embeddings are stored in
``tests/fixtures/colbert_formats/reference.npz``: PyLate pins sentence-transformers 5.3, so it
runs in a side venv, see ``make_fixtures.py`` there) and sentence-transformers v6's
``MultiVectorEncoder`` (installed here, compared live), on three tiny checkpoints: two saved
by PyLate itself (``pylate``: ``[Q] ``/``[D] `` prefixes, [MASK] expansion, punctuation
skiplist; ``pylate_plain``: no prefixes, no expansion, a one-word skiplist) and one in
Stanford's layout (``colbert_stanford``: ``HF_ColBERT`` + ``linear.weight`` + ``artifact.metadata``)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from mmembed.encoders import inspect_checkpoint, list_models, load_encoder, match_family
from mmembed.types import MMEmbedError
from mmembed_testing import parity

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "colbert_formats"


def _fixture_script() -> ModuleType:
    """The script that made the references (for the texts it encoded)."""
    spec = importlib.util.spec_from_file_location("colbert_formats_fixtures", FIXTURES / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SCRIPT = _fixture_script()
QUERIES, DOCUMENTS = _SCRIPT.QUERIES, _SCRIPT.DOCUMENTS

REFERENCE = np.load(FIXTURES / "reference.npz")
FAMILIES = {"pylate": "pylate_colbert", "pylate_plain": "pylate_colbert", "stanford": "stanford_colbert"}


@pytest.fixture(scope="module")
def stanford(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    path = make_tiny_checkpoint("colbert_stanford", tmp_path_factory.mktemp("colbert") / "stanford", seed=0)
    digest = hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    assert digest == str(REFERENCE["stanford/sha256"]), "the tiny builder changed: regenerate the fixtures"
    return path


@pytest.fixture(scope="module", params=list(FAMILIES))
def variant(request: pytest.FixtureRequest, stanford: Path) -> tuple[str, Path]:
    return request.param, stanford if request.param == "stanford" else FIXTURES / request.param


@pytest.mark.parametrize("batch_size", [3, 1])
def test_embeddings_match_pylate_and_sentence_transformers(
    variant: tuple[str, Path], batch_size: int
) -> None:
    name, path = variant
    encoder = load_encoder(path, device="cpu", dtype="float32")
    assert (encoder.info.family, encoder.info.kind, encoder.info.similarity, encoder.info.dim) == (
        FAMILIES[name],
        "multi",
        "maxsim",
        32,
    )
    queries = encoder.encode_queries(QUERIES, batch_size=batch_size)
    documents = encoder.encode_text_documents(DOCUMENTS, batch_size=batch_size)
    for side, ours, count in (("query", queries, len(QUERIES)), ("document", documents, len(DOCUMENTS))):
        pylate = [torch.from_numpy(REFERENCE[f"{name}/{side}/{batch_size}/{i}"]) for i in range(count)]
        parity.assert_embeddings_match(ours, pylate)
    st = pytest.importorskip(
        "sentence_transformers", reason="reference only: pip install sentence-transformers"
    )
    reference = st.MultiVectorEncoder(str(path), device="cpu")
    parity.assert_embeddings_match(
        queries, [t.cpu() for t in reference.encode_query(QUERIES, batch_size=batch_size)]
    )
    expected_d = [t.cpu() for t in reference.encode_document(DOCUMENTS, batch_size=batch_size)]
    parity.assert_embeddings_match(documents, expected_d)
    parity.assert_embeddings_match(encoder.encode_documents(DOCUMENTS, batch_size=batch_size), expected_d)


def test_the_checkpoints_layouts_are_what_their_libraries_write(stanford: Path) -> None:
    """What the matchers read: PyLate's keys and module, Stanford's architecture and files."""
    settings = json.loads((FIXTURES / "pylate" / "config_sentence_transformers.json").read_text())
    assert settings["model_type"] == "ColBERT" and settings["query_prefix"] == "[Q] "
    modules = json.loads((FIXTURES / "pylate" / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        "sentence_transformers.models.Transformer",
        "pylate.models.Dense.Dense",
    ]
    assert json.loads((stanford / "config.json").read_text())["architectures"] == ["HF_ColBERT"]
    assert json.loads((stanford / "artifact.metadata").read_text())["query_token_id"] == "[unused0]"
    facts = inspect_checkpoint(stanford)
    assert "linear.weight" in facts.weight_names and match_family(facts).id == "stanford_colbert"
    assert match_family(inspect_checkpoint(FIXTURES / "pylate")).id == "pylate_colbert"
    listed = {row["family"]: row for row in list_models()}
    assert {"pylate_colbert", "stanford_colbert"} <= set(listed)
    assert "colbert-ir/colbertv2.0" in listed["stanford_colbert"]["checkpoints"]


def test_broken_checkpoints_are_refused_with_the_reason(stanford: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    no_linear = shutil.copytree(stanford, tmp_path / "no_linear")
    weights = load_file(str(no_linear / "model.safetensors"))
    del weights["linear.weight"]
    save_file(weights, str(no_linear / "model.safetensors"))
    with pytest.raises(MMEmbedError, match=r"without its projection 'linear\.weight'"):
        load_encoder(no_linear, device="cpu")

    no_marker = shutil.copytree(stanford, tmp_path / "no_marker")
    meta = json.loads((no_marker / "artifact.metadata").read_text())
    (no_marker / "artifact.metadata").write_text(json.dumps({**meta, "query_token_id": "[Q]"}))
    with pytest.raises(MMEmbedError, match=r"marker token '\[Q\]' is not in the checkpoint's tokenizer"):
        load_encoder(no_marker, device="cpu")

    pooled = shutil.copytree(FIXTURES / "pylate", tmp_path / "pooled")
    modules = json.loads((pooled / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Pool", "type": "some_package.TokenPooling"})
    (pooled / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(MMEmbedError, match=r"some_package\.TokenPooling"):
        load_encoder(pooled, device="cpu")


def test_text_only_index_through_the_cli(
    stanford: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PDF pages are indexed by their text layer with a Stanford checkpoint; search and the stored
    vectors are the model's."""
    import mmembed
    from mmembed.cli import main
    from mmembed.loaders.pdf_text import page_text
    from mmembed.loaders.sample_pdfs import write_sample_pdfs
    from mmembed.scoring import maxsim

    pdf = sorted(write_sample_pdfs(tmp_path / "pdfs"))[0]
    index = tmp_path / "idx"
    assert (
        main(["index", str(pdf), "--index", str(index), "--model", str(stanford), "-q", "--dpi", "24"]) == 0
    )
    capsys.readouterr()
    assert main(["search", "--index", str(index), "solar capacity", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    encoder = load_encoder(stanford, device="cpu", dtype="float32")
    top = hits[0]
    expected = encoder.encode_text_documents([page_text(top["source"], top["page"])])[0]
    score = float(maxsim(encoder.encode_queries(["solar capacity"]), [expected])[0, 0])
    assert abs(score - top["score"]) < 1e-3 * abs(score)  # the index may store float16
    with mmembed.open_index(index, readonly=True) as opened:
        assert opened.encoder.family == "stanford_colbert"
