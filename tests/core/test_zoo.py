"""The model zoo across families: listing, dispatch from config only, refusals, batch-size
independence, input kinds and page budgets. (Equality with the references is in the
test_parity_<family>.py files.)"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mmembed.encoders import (
    Encoder,
    UnknownModelError,
    inspect_checkpoint,
    list_models,
    load_encoder,
    match_family,
)
from mmembed.encoders.vlm import VLMEncoder
from mmembed.types import EncoderInfo, MMEmbedError
from mmembed_testing import parity

ISSUE_CHECKPOINTS = {
    "biqwen2_5": ["nomic-ai/nomic-embed-multimodal-3b", "nomic-ai/nomic-embed-multimodal-7b"],
    "colqwen2_5": ["vidore/colqwen2.5-v0.2", "nomic-ai/colnomic-embed-multimodal-3b"],
    "colqwen2": ["vidore/colqwen2-v1.0"],
    "dse_qwen2": ["llamaindex/vdr-2b-multi-v1"],
    "colpali": ["vidore/colpali-v1.3", "vidore/colpali-v1.2"],
    "colidefics3": ["vidore/colSmol-256M", "vidore/colSmol-500M"],
    "colqwen3": ["TomoroAI/tomoro-colqwen3-embed-4b"],
    "nemotron_colembed": ["nvidia/nemotron-colembed-vl-4b-v2", "nvidia/nemotron-colembed-vl-8b-v2"],
}
TINY = [
    ("biqwen2_5", False),
    ("biqwen2_5", True),
    ("colqwen2", False),
    ("colqwen2", True),
    ("biqwen2", False),
    ("biqwen2", True),
    ("dse_qwen2", False),
    ("colpali", False),
    ("colpali", True),
    ("colidefics3", False),
    ("colidefics3", True),
    ("colqwen3", False),
    ("nemotron_colembed", False),
]


def _pages(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(11)
    sizes = [(40 + 23 * i, 150 - 11 * i) for i in range(n)]  # all different, portrait and landscape
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _assert_close(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and parity.relative_error(x, y) < parity.TOLERANCE


# -- listing and dispatch -------------------------------------------------------------------


def test_every_family_is_listed_with_kind_dim_and_checkpoints(capsys: pytest.CaptureFixture[str]) -> None:
    from mmembed.cli import main

    rows = {row["family"]: row for row in list_models()}
    for family, checkpoints in ISSUE_CHECKPOINTS.items():
        assert set(checkpoints) <= set(rows[family]["checkpoints"]), family
        assert rows[family]["notes"] and rows[family]["kind"] in ("multi", "single")
    assert rows["biqwen2_5"]["kind"] == "single" and rows["colpali"]["dim"] == 128
    assert main(["models"]) == 0
    printed = capsys.readouterr().out
    assert all(family in printed for family in ISSUE_CHECKPOINTS)
    assert "nomic-ai/nomic-embed-multimodal-3b" in printed


@pytest.mark.parametrize(
    ("family", "lora"), TINY, ids=[f"{f}-{'lora' if lo else 'merged'}" for f, lo in TINY]
)
def test_tiny_checkpoints_dispatch_to_their_family(tiny_checkpoint, family: str, lora: bool) -> None:
    assert match_family(inspect_checkpoint(tiny_checkpoint(family, lora=lora))).id == family


def _copy_with(source: Path, target: Path, *, config: dict | None = None, drop: str | None = None) -> Path:
    folder = shutil.copytree(source, target)
    if config is not None:
        data = json.loads((folder / "config.json").read_text())
        data.update(config)
        (folder / "config.json").write_text(json.dumps(data))
    if drop is not None:
        weights = load_file(str(folder / "model.safetensors"))
        save_file(
            {k: v for k, v in weights.items() if not k.startswith(drop)}, str(folder / "model.safetensors")
        )
    return folder


def test_plain_vlms_and_chat_adapters_are_refused_naming_the_families(
    tiny_checkpoint, tmp_path: Path
) -> None:
    """Configs no family can place get an error listing the families, never a guess."""
    plain_qwen2 = tiny_checkpoint("dse_qwen2")
    no_packaging = shutil.copytree(
        plain_qwen2, tmp_path / "qwen2-vl-instruct", ignore=shutil.ignore_patterns("modules.json")
    )
    chat = shutil.copytree(tiny_checkpoint("biqwen2_5", lora=True), tmp_path / "chat-lora")
    adapter_config = json.loads((chat / "adapter_config.json").read_text())
    (chat / "adapter_config.json").write_text(json.dumps({**adapter_config, "task_type": "CAUSAL_LM"}))
    paligemma = _copy_with(
        tiny_checkpoint("colpali"),
        tmp_path / "paligemma",
        config={"architectures": ["PaliGemmaForConditionalGeneration"]},
        drop="custom_text_proj.",
    )
    smolvlm = _copy_with(
        tiny_checkpoint("colidefics3"),
        tmp_path / "smolvlm",
        config={"architectures": ["Idefics3ForConditionalGeneration"]},
        drop="linear.",
    )
    for folder in (no_packaging, chat, paligemma, smolvlm):
        with pytest.raises(UnknownModelError) as raised:
            load_encoder(folder, device="cpu")
        message = str(raised.value)
        assert all(family in message for family in ISSUE_CHECKPOINTS), message
        assert "never from the model's name" in message


# -- encoding behaviour shared by every family ------------------------------------------------


@pytest.mark.parametrize("family", ["biqwen2_5", "colpali", "colidefics3"])
def test_batch_of_eight_equals_one_by_one(tiny_checkpoint, family: str) -> None:
    encoder = load_encoder(tiny_checkpoint(family), device="cpu", dtype="float32")
    pages = _pages(8)
    _assert_close(encoder.encode_images(pages, batch_size=8), encoder.encode_images(pages, batch_size=1))
    queries = [q * (i + 1) for i, q in enumerate(parity.QUERIES)]
    _assert_close(
        encoder.encode_queries(queries, batch_size=8), encoder.encode_queries(queries, batch_size=1)
    )


@pytest.fixture(scope="module")
def dense(tiny_checkpoint) -> Encoder:
    return load_encoder(tiny_checkpoint("biqwen2_5"), device="cpu", dtype="float32")


def test_single_vector_outputs_are_one_unit_row(dense: Encoder) -> None:
    for out in dense.encode_queries(["a", "revenue in 2023"]) + dense.encode_images(_pages(2)):
        assert out.shape == (1, dense.info.dim) and out.dtype == torch.float32
        assert torch.allclose(out.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_multimodal_queries_live_in_the_document_space(dense: Encoder) -> None:
    page = _pages(1)[0]
    text, image, both = dense.encode_queries_multimodal(["revenue", page, (page, "Figure 3")])
    # a mixed batch and a batch of one take different kernel paths: equal within float tolerance
    torch.testing.assert_close(text, dense.encode_queries(["revenue"])[0])
    torch.testing.assert_close(image, dense.encode_images([page])[0])
    torch.testing.assert_close(both, dense.encode_documents([(page, "Figure 3")])[0])
    assert not torch.allclose(image, both)  # the caption is really encoded with the page


def test_bad_document_kinds_are_named(dense: Encoder) -> None:
    page = _pages(1)[0]
    with pytest.raises(MMEmbedError, match="document 1 is a int"):
        dense.encode_documents(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(MMEmbedError, match="document 0 is a tuple"):
        dense.encode_documents([("caption", page)])  # type: ignore[list-item]
    with pytest.raises(MMEmbedError, match="image placeholder"):
        dense.encode_documents([(page, "see <|image_pad|> here")])
    with pytest.raises(MMEmbedError, match=r"query 0 \(1x400 pixels\) cannot be encoded"):
        dense.encode_queries_multimodal([Image.new("RGB", (1, 400))])


def test_an_encoder_without_document_support_says_so() -> None:
    class PagesOnly(Encoder):
        info = EncoderInfo("x", "pages_only", "multi", 4, "maxsim")

        def encode_queries(self, queries, *, batch_size=None, progress=False):
            return []

        def encode_images(self, images, *, batch_size=None, progress=False):
            return []

    with pytest.raises(MMEmbedError, match="pages_only encoder cannot encode text or interleaved"):
        PagesOnly().encode_documents(["text"])
    with pytest.raises(MMEmbedError, match="cannot encode image queries"):
        PagesOnly().encode_queries_multimodal([Image.new("RGB", (8, 8))])


# -- page budgets and layouts ------------------------------------------------------------------


def test_page_budget_options(tiny_checkpoint) -> None:
    page = Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 220, 3), dtype=np.uint8))
    colqwen2 = tiny_checkpoint("colqwen2")
    full = load_encoder(colqwen2, device="cpu").encode_images([page])[0]
    small = load_encoder(colqwen2, device="cpu", max_num_visual_tokens=16).encode_images([page])[0]
    assert small.shape[0] < full.shape[0]

    dse = load_encoder(tiny_checkpoint("dse_qwen2"), device="cpu")
    assert isinstance(dse, VLMEncoder)
    assert dse.image_processor.size == {"shortest_edge": 28 * 28, "longest_edge": 768 * 28 * 28}  # the card's

    smol = tiny_checkpoint("colidefics3")
    tiled = load_encoder(smol, device="cpu").encode_images([page])[0]
    one_tile = load_encoder(smol, device="cpu", longest_edge=32).encode_images([page])[0]
    assert one_tile.shape[0] < tiled.shape[0]
    with pytest.raises(MMEmbedError, match="tile size"):
        load_encoder(smol, device="cpu", longest_edge=8)
    with pytest.raises(MMEmbedError, match=r"unknown option.*max_pixels"):
        load_encoder(tiny_checkpoint("colpali"), device="cpu", max_pixels=1000)


@pytest.mark.parametrize("family", ["colqwen2", "colpali", "colidefics3"])
def test_transformers_key_layout_loads_the_same_model(tiny_checkpoint, tmp_path: Path, family: str) -> None:
    from mmembed_testing import make_tiny_checkpoint

    legacy = load_encoder(tiny_checkpoint(family), device="cpu", dtype="float32")
    other = load_encoder(
        make_tiny_checkpoint(family, tmp_path / family, seed=0, layout="transformers"),
        device="cpu",
        dtype="float32",
    )
    for a, b in zip(
        other.encode_queries(list(parity.QUERIES[:2])),
        legacy.encode_queries(list(parity.QUERIES[:2])),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


# -- the tiny checkpoints themselves --------------------------------------------------------


def _keys(folder: Path, name: str = "model.safetensors") -> set[str]:
    return set(load_file(str(folder / name)))


def test_tiny_checkpoints_are_laid_out_like_the_published_ones(tiny_checkpoint) -> None:
    nomic = tiny_checkpoint("biqwen2_5", lora=True)
    adapter = json.loads((nomic / "adapter_config.json").read_text())
    assert (
        adapter["task_type"] == "FEATURE_EXTRACTION" and "custom_text_proj" not in adapter["target_modules"]
    )
    base = Path(adapter["base_model_name_or_path"])
    assert json.loads((base / "config.json").read_text())["architectures"] == [
        "Qwen2_5_VLForConditionalGeneration"
    ]
    assert "model.layers.0.self_attn.q_proj.weight" in _keys(base)  # original Qwen2.5-VL layout

    colpali = _keys(tiny_checkpoint("colpali"))
    assert {"custom_text_proj.weight", "model.language_model.model.embed_tokens.weight"} <= colpali
    assert any(k.startswith("model.vision_tower.") for k in colpali)
    colpali_lora = _keys(tiny_checkpoint("colpali", lora=True), "adapter_model.safetensors")
    assert "base_model.model.custom_text_proj.lora_A.weight" in colpali_lora

    smol = tiny_checkpoint("colidefics3")
    assert {"linear.weight", "model.text_model.embed_tokens.weight"} <= _keys(smol)
    assert json.loads((smol / "processor_config.json").read_text())["image_seq_len"] == 16

    assert (tiny_checkpoint("dse_qwen2") / "modules.json").is_file()
    colqwen3 = _keys(tiny_checkpoint("colqwen3"))
    assert "model.visual.deepstack_merger_list.0.norm.weight" in colqwen3
    assert (
        load_file(str(tiny_checkpoint("colqwen3") / "model.safetensors"))["custom_text_proj.weight"].shape[0]
        == 320
    )


def test_tiny_builders_are_deterministic(tmp_path: Path) -> None:
    from mmembed_testing import make_tiny_checkpoint

    for family in ("colpali", "colidefics3", "biqwen2_5"):
        first = make_tiny_checkpoint(family, tmp_path / f"{family}-1", seed=3)
        second = make_tiny_checkpoint(family, tmp_path / f"{family}-2", seed=3)
        files = sorted(p.name for p in first.iterdir())
        assert files == sorted(p.name for p in second.iterdir())
        assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files), family
