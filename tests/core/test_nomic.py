"""Nomic Embed v1.5 (``nomic_v1_5``): parity with Nomic's contrastors code, the pair's options,
and text -> image search through the shared space (tiny checkpoints, float32, CPU).

The reference outputs in ``tests/fixtures/nomic_v1_5/reference.npz`` were made by
``make_fixtures.py`` next to it, from contrastors' ``NomicBertModel`` / ``NomicVisionModel`` on
the same tiny checkpoints (built deterministically by mmembed_testing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mmembed.cli import main
from mmembed.encoders import inspect_checkpoint, list_models, load_encoder, match_family
from mmembed.encoders.nomic import NomicEncoder, tile_boxes
from mmembed.encoders.nomic_vision import ClipPreprocessing
from mmembed.index import open_index
from mmembed.retrieve import Retriever
from mmembed.types import EncoderMismatchError, MMEmbedError
from mmembed_testing.parity import assert_embeddings_match

FIXTURE = Path(__file__).parents[1] / "fixtures" / "nomic_v1_5" / "reference.npz"
CONFIG_VARIANTS = FIXTURE.with_name("config_variants.npz")
DIMS = (768, 512, 256, 128, 64)
TASKS = {"query": "search_query", "document": "search_document", "classification": "classification"}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


def _encoder(tiny_nomic: tuple[Path, Path], **options: object) -> NomicEncoder:
    text, vision = tiny_nomic
    encoder = load_encoder(vision, device="cpu", dtype="float32", text_model=str(text), **options)
    assert isinstance(encoder, NomicEncoder)
    return encoder


def _images(reference: dict[str, np.ndarray]) -> list[Image.Image]:
    return [Image.fromarray(reference[f"image_{i}"]) for i in range(4)]


@pytest.mark.parametrize("dim", DIMS)
def test_text_matches_contrastors_at_every_matryoshka_size(
    tiny_nomic: tuple[Path, Path], reference: dict[str, np.ndarray], dim: int
) -> None:
    text = load_encoder(tiny_nomic[0], device="cpu", dtype="float32", matryoshka_dim=dim)
    assert isinstance(text, NomicEncoder) and text.info.dim == dim
    for group, task in TASKS.items():
        texts = [str(t) for t in reference[f"text_{group}_inputs"]]
        ours = text.encode_texts(texts, task=task, batch_size=2)  # padded batches, split differently
        assert_embeddings_match(ours, list(torch.from_numpy(reference[f"text_{group}_{dim}"])))
    queries = [str(t) for t in reference["text_query_inputs"]]
    assert_embeddings_match(
        text.encode_queries(queries), list(torch.from_numpy(reference[f"text_query_{dim}"]))
    )


def test_prefixes_and_tokens_are_the_references(
    tiny_nomic: tuple[Path, Path], reference: dict[str, np.ndarray]
) -> None:
    text = load_encoder(tiny_nomic[0], device="cpu", dtype="float32")
    assert isinstance(text, NomicEncoder)
    prefixes = {
        "query": "search_query: ",
        "document": "search_document: ",
        "classification": "classification: ",
    }
    for group, prefix in prefixes.items():
        texts = [prefix + str(t) for t in reference[f"text_{group}_inputs"]]
        ids = text.text.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="np")
        np.testing.assert_array_equal(ids["input_ids"], reference[f"text_{group}_input_ids"])
    documents = [str(t) for t in reference["text_document_inputs"]]
    assert_embeddings_match(
        text.encode_documents(documents), list(torch.from_numpy(reference["text_document_768"]))
    )


@pytest.mark.parametrize("dim", DIMS)
def test_images_match_contrastors_at_every_matryoshka_size(
    tiny_nomic: tuple[Path, Path], reference: dict[str, np.ndarray], dim: int
) -> None:
    encoder = _encoder(tiny_nomic, matryoshka_dim=dim)
    expected = list(torch.from_numpy(reference[f"image_{dim}"]))
    for batch_size in (1, 3):  # mixed image sizes in one batch, and alone
        assert_embeddings_match(encoder.encode_images(_images(reference), batch_size=batch_size), expected)


def test_clip_preprocessing_is_the_references(
    tiny_nomic: tuple[Path, Path], reference: dict[str, np.ndarray]
) -> None:
    preprocess = ClipPreprocessing.from_file(tiny_nomic[1] / "preprocessor_config.json")
    pixels = torch.stack([preprocess(image) for image in _images(reference)])
    torch.testing.assert_close(pixels, torch.from_numpy(reference["image_pixels"]), atol=1e-5, rtol=0)


def test_checkpoints_are_recognised_from_their_files(tiny_nomic: tuple[Path, Path], tmp_path: Path) -> None:
    text, vision = tiny_nomic
    renamed = tmp_path / "colqwen2.5-v0.2"  # a misleading folder name changes nothing
    shutil.copytree(vision, renamed)
    for folder in (text, vision, renamed):
        assert match_family(inspect_checkpoint(folder)).id == "nomic_v1_5"
    listing = next(m for m in list_models() if m["family"] == "nomic_v1_5")  # what `mmembed models` prints
    assert {"text_model", "matryoshka_dim", "tiles"} <= set(listing["options"])
    assert "nomic-ai/nomic-embed-vision-v1.5" in listing["checkpoints"]
    config = json.loads((vision / "config.json").read_text())
    assert config["model_type"] == "nomic_bert" and "AutoModel" in config["auto_map"]
    assert "encoder.layers.0.attn.Wqkv.weight" in load_file(str(text / "model.safetensors"))


def test_text_checkpoint_alone_refuses_images(tiny_nomic: tuple[Path, Path]) -> None:
    text = load_encoder(tiny_nomic[0], device="cpu")
    assert text.info.kind == "single" and text.info.settings == {"matryoshka_dim": 768}
    with pytest.raises(MMEmbedError, match=r"text.*checkpoint and cannot embed images.*nomic-embed-vision"):
        text.encode_images([Image.new("RGB", (32, 32))])
    with pytest.raises(MMEmbedError, match="applies to the vision checkpoint"):
        load_encoder(tiny_nomic[0], device="cpu", tiles=4)


def test_pair_shares_the_text_tower_and_checks_its_partner(tiny_nomic: tuple[Path, Path]) -> None:
    text_path, vision_path = tiny_nomic
    pair = _encoder(tiny_nomic)
    text = load_encoder(text_path, device="cpu", dtype="float32")
    assert isinstance(text, NomicEncoder) and pair.text is text.text  # one copy of the weights
    assert pair.info.settings == {"matryoshka_dim": 768, "text_model": str(text_path.resolve()), "tiles": 1}
    torch.testing.assert_close(pair.encode_queries(["revenue"])[0], text.encode_queries(["revenue"])[0])
    with pytest.raises(MMEmbedError, match="is not a Nomic Embed Text checkpoint"):
        load_encoder(vision_path, device="cpu", text_model=str(vision_path))
    with pytest.raises(MMEmbedError, match="matryoshka_dim=1000 must be between 1 and"):
        _encoder(tiny_nomic, matryoshka_dim=1000)


def test_documents_queries_and_refusals(tiny_nomic: tuple[Path, Path]) -> None:
    encoder = _encoder(tiny_nomic)
    page = Image.new("RGB", (120, 160), "white")
    text_doc, image_doc = encoder.encode_documents(["Table 2: operating expenses", page])
    torch.testing.assert_close(image_doc, encoder.encode_images([page])[0])
    torch.testing.assert_close(
        text_doc, encoder.encode_texts(["Table 2: operating expenses"], task="search_document")[0]
    )
    assert not torch.allclose(
        text_doc, encoder.encode_queries(["Table 2: operating expenses"])[0]
    )  # prefixes differ
    image_query, text_query = encoder.encode_queries_multimodal([page, "revenue"])
    torch.testing.assert_close(image_query, image_doc)
    torch.testing.assert_close(text_query, encoder.encode_queries(["revenue"])[0])
    with pytest.raises(MMEmbedError, match=r"document 0 is a tuple.*two documents"):
        encoder.encode_documents([(page, "caption")])
    with pytest.raises(MMEmbedError, match="unknown task 'summary'"):
        encoder.encode_texts(["x"], task="summary")


def test_truncation_is_reported(tiny_nomic: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    text = load_encoder(tiny_nomic[0], device="cpu")
    long = " ".join(["quarterly revenue grew"] * 100)
    with caplog.at_level(logging.WARNING, logger="mmembed.encoders.nomic_text"):
        text.encode_documents(["short", long])
    assert "1 text(s) longer than 128 tokens were truncated (e.g. text 1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmembed.encoders.nomic_text"):
        text.encode_documents(["short"])
    assert "truncated" not in caplog.text


def test_vision_weights_load_strictly(tiny_nomic: tuple[Path, Path], tmp_path: Path) -> None:
    broken = tmp_path / "vision"
    shutil.copytree(tiny_nomic[1], broken)
    weights = load_file(str(broken / "model.safetensors"))
    del weights["layers.1.mlp.norm.weight"]
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(MMEmbedError, match=r"no weights for layers\.1\.mlp\.norm\.weight"):
        load_encoder(broken, device="cpu", text_model=str(tiny_nomic[0]))


def test_tiles_make_a_multi_vector_page(tiny_nomic: tuple[Path, Path]) -> None:
    # Square tiles (CLIP centre-crops a square), overlapping where the grid's cells are not square.
    assert tile_boxes(1224, 1584, 4) == [
        (0, 0, 792, 792),
        (432, 0, 1224, 792),
        (0, 792, 792, 1584),
        (432, 792, 1224, 1584),
    ]
    assert tile_boxes(1224, 1584, 2) == [(0, 0, 1224, 1224), (0, 360, 1224, 1584)]
    for width, height, tiles in ((1224, 1584, 6), (1584, 1224, 3), (300, 200, 5)):
        covered = np.zeros((height, width), dtype=bool)
        for left, top, right, bottom in tile_boxes(width, height, tiles):
            assert right - left == bottom - top and 0 <= left < right <= width and 0 <= top < bottom <= height
            covered[top:bottom, left:right] = True
        assert covered.all()
    page = Image.fromarray(np.random.default_rng(3).integers(0, 256, (300, 200, 3), dtype=np.uint8))
    tiled = _encoder(tiny_nomic, tiles=4, matryoshka_dim=256)
    assert (tiled.info.kind, tiled.info.similarity, tiled.info.settings["tiles"]) == ("multi", "maxsim", 4)
    vectors = tiled.encode_images([page])[0]
    assert vectors.shape == (5, 256)
    torch.testing.assert_close(
        vectors[0], _encoder(tiny_nomic, matryoshka_dim=256).encode_images([page])[0][0]
    )
    crop = page.crop(tile_boxes(200, 300, 4)[3])
    torch.testing.assert_close(vectors[4], tiled.encode_queries_multimodal([crop])[0][0])
    with pytest.raises(MMEmbedError, match="tiles=40 must be between 1"):
        _encoder(tiny_nomic, tiles=40)


def test_index_refuses_a_query_encoder_of_another_matryoshka_size(
    tiny_nomic: tuple[Path, Path], tmp_path: Path
) -> None:
    small = _encoder(tiny_nomic, matryoshka_dim=256)
    with open_index(tmp_path / "idx", encoder=small.info) as index:
        Retriever(index, small)  # the same size is fine
        with pytest.raises(EncoderMismatchError, match="dim: 256 != 128"):
            Retriever(index, _encoder(tiny_nomic, matryoshka_dim=128))
    text_only_same_dim = load_encoder(tiny_nomic[0], device="cpu", dtype="float32", matryoshka_dim=256)
    with (
        open_index(tmp_path / "idx", create=False, readonly=True) as index,
        pytest.raises(EncoderMismatchError, match=r"\(name: "),  # the text model alone is another encoder
    ):
        Retriever(index, text_only_same_dim)


def test_text_to_image_search_end_to_end_through_the_cli(
    tiny_nomic: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pages (images) indexed with the vision model, a text query searched through the text model:
    the CLI's ranking and scores are the dot products of the two towers' vectors."""
    text, vision = tiny_nomic
    rng = np.random.default_rng(11)
    docs = tmp_path / "docs"
    docs.mkdir()
    pictures = {}
    for i, size in enumerate([(120, 160), (200, 90), (64, 64), (90, 140)]):
        picture = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        picture.save(docs / f"picture{i}.png")
        pictures[str((docs / f"picture{i}.png").resolve())] = picture
    index = tmp_path / "idx"
    options = [
        "--model",
        str(vision),
        "--device",
        "cpu",
        "--option",
        f"text_model={text}",
        "--option",
        "matryoshka_dim=512",
    ]
    assert main(["index", str(docs), "--index", str(index), "-q", *options]) == 0
    capsys.readouterr()
    # The index recorded the options; search reuses them without being told.
    assert (
        main(["search", "quarterly revenue", "--index", str(index), "-k", "4", "--json", "--device", "cpu"])
        == 0
    )
    hits = json.loads(capsys.readouterr().out)

    encoder = _encoder(tiny_nomic, matryoshka_dim=512)
    query = encoder.encode_queries(["quarterly revenue"])[0][0]  # (512,)
    expected = {source: float(encoder.encode_images([p])[0][0] @ query) for source, p in pictures.items()}
    assert [h["source"] for h in hits] == sorted(expected, key=lambda s: -expected[s])
    for hit in hits:
        assert hit["score"] == pytest.approx(expected[hit["source"]], abs=1e-4)
    assert len({round(s, 6) for s in expected.values()}) == 4  # a real ranking, no ties

    capsys.readouterr()
    assert (
        main(["search", "x", "--index", str(index), "--device", "cpu", "--option", "matryoshka_dim=256"]) == 1
    )
    assert "dim: 512 != 256" in capsys.readouterr().err


def test_text_weights_load_strictly(tiny_nomic: tuple[Path, Path], tmp_path: Path) -> None:
    broken = tmp_path / "text"
    shutil.copytree(tiny_nomic[0], broken)
    weights = load_file(str(broken / "model.safetensors"))
    del weights["encoder.layers.1.mlp.fc12.weight"]
    save_file(weights, str(broken / "model.safetensors"))
    with pytest.raises(
        MMEmbedError, match=r"do not fit nomic-embed-text-v1.5's layout \(missing_keys: layers\.1"
    ):
        load_encoder(broken, device="cpu")


def test_cli_indexes_pdf_pages_with_the_vision_model(
    tiny_nomic: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmembed import render_page
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    text, vision = tiny_nomic
    pdf = write_sample_pdfs(tmp_path / "pdfs")[0]
    index = tmp_path / "idx"
    argv = ["index", str(pdf), "--index", str(index), "-q", "--dpi", "48", "--model", str(vision)]
    assert main([*argv, "--device", "cpu", "--option", f"text_model={text}", "--option", "tiles=2"]) == 0
    with open_index(index, create=False, readonly=True) as opened:
        records = sorted(opened.records(), key=lambda r: r.page)
        stored = opened.get_embeddings([records[0].id])[0]
        assert opened.encoder.settings["tiles"] == 2 and opened.encoder.kind == "multi"
    assert [r.page for r in records] == [1, 2, 3]
    encoder = _encoder(tiny_nomic, tiles=2)
    assert stored is not None and stored.shape == (3, 768)  # whole view + 2 tiles
    torch.testing.assert_close(
        stored, encoder.encode_images([render_page(pdf, 1, dpi=48)])[0], atol=1e-4, rtol=0
    )
    capsys.readouterr()
    assert main(["search", "revenue", "--index", str(index), "--device", "cpu", "-k", "3"]) == 0
    assert capsys.readouterr().out.count(str(pdf.resolve())) == 3
    # `mmembed serve` without --model reopens the index's model with the options it recorded.
    from mmembed.serve import open_server

    server = open_server(index, device="cpu")
    try:
        assert server.retriever.encoder.info.settings["tiles"] == 2
    finally:
        server.index.close()


def _text_copy(tiny_nomic: tuple[Path, Path], folder: Path, **changes: object) -> Path:
    """The tiny text checkpoint with ``config.json`` fields changed (``None`` removes one)."""
    shutil.copytree(tiny_nomic[0], folder)
    config = json.loads((folder / "config.json").read_text())
    for field, value in changes.items():
        if value is None:
            config.pop(field, None)
        else:
            config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def config_variants(tiny_nomic: tuple[Path, Path]) -> dict[str, np.ndarray]:
    """Reference embeddings of the tiny text checkpoint under changed configs (make_config_fixtures.py)."""
    with np.load(CONFIG_VARIANTS) as data:
        variants = dict(data)
    weights = hashlib.sha256((tiny_nomic[0] / "model.safetensors").read_bytes()).hexdigest()
    assert str(variants["model_sha256"]) == weights, "tiny builder changed: regenerate the fixture"
    return variants


def _variant_matches_reference(
    tiny_nomic: tuple[Path, Path], variants: dict[str, np.ndarray], name: str, folder: Path
) -> None:
    """Loads the tiny text checkpoint with the variant's config changes and checks our embeddings
    (padded batch of the fixture's queries, Matryoshka 768 and 64) against contrastors'."""
    changes = json.loads(str(variants[f"{name}_changes"]))
    changed = _text_copy(tiny_nomic, folder, **changes)
    queries = [str(q) for q in variants["queries"]]
    for dim in (768, 64):
        encoder = load_encoder(changed, device="cpu", dtype="float32", matryoshka_dim=dim)
        assert isinstance(encoder, NomicEncoder)
        assert_embeddings_match(
            encoder.encode_texts(queries, task="search_query"),
            list(torch.from_numpy(variants[f"{name}_{dim}"])),
        )


def test_a_missing_config_field_takes_the_references_default(
    tiny_nomic: tuple[Path, Path],
    reference: dict[str, np.ndarray],
    config_variants: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    """Issue 29 item 6: without ``rotary_emb_base`` contrastors' ``NomicBertConfig`` computes with
    10,000 (mmembed used 1,000, silently). Checked against the reference's own outputs on that
    config (the tiny checkpoint states 1,000, so the default really changes the embeddings)."""
    config = json.loads((tiny_nomic[0] / "config.json").read_text())
    assert config["rotary_emb_base"] != 10_000
    _variant_matches_reference(tiny_nomic, config_variants, "missing_rotary_emb_base", tmp_path / "missing")
    # ... and the fixture is not the stated-1,000 result under another name.
    assert not np.allclose(
        config_variants["missing_rotary_emb_base_64"], reference["text_query_64"], atol=1e-3
    )
    # A missing field whose reference default the native model cannot run is refused by name.
    with pytest.raises(MMEmbedError, match=r"qkv_proj_bias=True \(absent: the reference's default\)"):
        load_encoder(_text_copy(tiny_nomic, tmp_path / "bias", qkv_proj_bias=None), device="cpu")


def test_swiglu_width_and_vocabulary_are_rounded_like_the_reference(
    tiny_nomic: tuple[Path, Path], config_variants: dict[str, np.ndarray], tmp_path: Path
) -> None:
    """Issue 29 item 7: contrastors rounds the SwiGLU width up to a multiple of 256 and pads
    ``vocab_size`` to ``pad_vocab_size_multiple``, so a config stating the unrounded numbers
    describes the very weights of the tiny checkpoint. Checked against the reference's own
    outputs on that unrounded config."""
    config = json.loads((tiny_nomic[0] / "config.json").read_text())
    changes = json.loads(str(config_variants["unrounded_widths_changes"]))
    assert changes["n_inner"] % 256 != 0 and changes["vocab_size"] % config["pad_vocab_size_multiple"] != 0
    _variant_matches_reference(tiny_nomic, config_variants, "unrounded_widths", tmp_path / "unrounded")
    # Weights that truly do not fit: our own message, not transformers' load report.
    wider = _text_copy(tiny_nomic, tmp_path / "wider", n_inner=config["n_inner"] + 1)
    with pytest.raises(MMEmbedError, match=r"do not fit nomic-embed-text-v1.5's layout \(mismatched"):
        load_encoder(wider, device="cpu")
