"""``mmembed.train`` on every registered model family: trained here, or refused with its reason.

The test is parametrized over the registry itself, so a newly registered family fails it
until it is added to :data:`TRAINED` (with the tiny checkpoint it trains on) or to
:data:`mmembed.finetune.families.REFUSED` (with why). Each trained family runs two CPU
steps (batch 2, one hard negative) of the real command on one small PDF indexed with its
tiny random checkpoint, then checks what the recipe promises: finite losses, LoRA weights
moved, the vision / audio towers untouched and frozen, the saved adapter, loaded back with
``load_encoder``, reproducing the in-training embeddings within 1e-5, and the ``--merge``
checkpoint loading as the same family with the same vectors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import mmembed
from mmembed.encoders.registry import families
from mmembed.finetune import UntrainableFamilyError
from mmembed.finetune.families import REFUSED
from mmembed_testing.colour_pages import COLOURS, DPI, ColourPages, write_colour_pages

TRAINED: dict[str, str] = {
    family: family
    for family in (
        "colqwen2_5", "colqwen2", "colqwen3", "colqwen3_5", "biqwen2", "biqwen2_5", "biqwen3_5",
        "dse_qwen2", "colpali", "colidefics3", "colgemma3", "bigemma3", "colmodernvbert",
        "bimodernvbert", "colmodernvbert_hf", "colpali_hf", "colqwen2_hf", "colqwen2_5_omni",
        "nemotron_colembed", "omni_embed_nemotron", "nomic_v1_5",
    )
}  # fmt: skip
"""Registry family id -> the ``mmembed_testing`` tiny checkpoint it trains on."""

TOWERS = {family: {"audio_tower", "visual"} for family in ("colqwen2_5_omni", "omni_embed_nemotron")}
"""Towers a family must report frozen beyond "at least one" (Omni: vision and audio)."""
OPTIONS = {"omni_embed_nemotron": {"audio_weight": 0.25}, "nomic_v1_5": {"tiles": 2}}
"""Load options the index records: training must load the model with them (else it refuses
the index as built by another model). Nomic with tiles: pages are several vectors, queries one."""
PARTNER = {"nomic_v1_5": "nomic_text_v1_5"}
"""Families whose index pairs two checkpoints: the trained one loads back as ``text_model=``
(the vision checkpoint stays the index's model, the adapter replaces its text partner)."""


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only waits (2-core CI)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_pdf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder with one 8-page PDF, pairs naming four of its pages)."""
    root = tmp_path_factory.mktemp("family_pages")
    pages: ColourPages = write_colour_pages(root / "all")
    docs = root / "docs"
    docs.mkdir()
    shutil.copy(pages.docs / "plain.pdf", docs / "plain.pdf")
    pairs = root / "pairs.jsonl"
    rows = [
        {"query": colour, "source": str(docs / "plain.pdf"), "page": i + 1}
        for i, colour in enumerate(list(COLOURS)[:4])
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return docs, pairs


@pytest.mark.parametrize("family", sorted(f.id for f in families()))
def test_every_family_trains_or_is_refused_with_its_reason(
    family: str,
    tiny_checkpoint: Callable[..., Path],
    one_pdf: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    if family in REFUSED:
        _check_refused(family, one_pdf[1], tmp_path)
    elif family in TRAINED:
        options = dict(OPTIONS.get(family, {}))
        if family in PARTNER:
            options["text_model"] = str(tiny_checkpoint(PARTNER[family]))
        _check_trained(family, tiny_checkpoint(TRAINED[family]), options, one_pdf, tmp_path)
    else:
        pytest.fail(
            f"the registered family {family!r} is neither trained in this test (TRAINED) nor refused "
            "with its reason (mmembed.finetune.families.REFUSED): add it to one of them"
        )


def _check_refused(family: str, pairs: Path, tmp_path: Path) -> None:
    from mmembed.types import EncoderInfo

    kind = next(f.kind for f in families() if f.id == family)
    info = EncoderInfo(
        name=str(tmp_path / "model"),
        family=family,
        kind=kind,
        dim=8,
        similarity="maxsim" if kind == "multi" else "dot",
    )
    mmembed.open_index(tmp_path / "index", info).close()
    out = tmp_path / "adapter"
    reason = REFUSED[family]
    assert len(reason) > 40, "a refusal says why, and what to use instead"
    with pytest.raises(UntrainableFamilyError, match=rf"family {family}\) cannot be fine-tuned"):
        mmembed.train(tmp_path / "index", pairs, out)
    assert not out.exists()


def _check_trained(
    family: str, model: Path, options: dict[str, Any], one_pdf: tuple[Path, Path], tmp_path: Path
) -> None:
    from mmembed.loaders import render_page

    docs, pairs = one_pdf

    def load_trained(folder: Path) -> mmembed.Encoder:
        if family in PARTNER:  # the adapter / merged checkpoint is the text partner
            return mmembed.load_encoder(model, **{**options, "text_model": str(folder)})
        return mmembed.load_encoder(folder, **options)

    encoder = mmembed.load_encoder(model, **options)
    assert encoder.info.family == family
    with mmembed.open_index(tmp_path / "index", encoder.info) as index:
        mmembed.index_documents([docs], index, encoder, dpi=DPI)
    result = mmembed.train(
        tmp_path / "index",
        pairs,
        tmp_path / "adapter",
        max_steps=2,
        batch_size=2,
        negatives=1,
        eval_fraction=0.0,
        learning_rate=1e-2,
        lora_dropout=0.0,
        dpi=DPI,
        merge=True,
    )
    assert result.steps == 2 and len(result.losses) == 2
    assert all(torch.isfinite(torch.tensor(result.losses))), result.losses
    assert result.trained is not None
    trainable = result.trained.trainable

    # LoRA sits on the language model (and the head) only, and training moved it.
    from safetensors.torch import load_file

    lora = {
        name.removeprefix("base_model.model."): tensor
        for name, tensor in load_file(result.out / "adapter_model.safetensors").items()
    }
    assert lora and all(".lora_" in name for name in lora), sorted(lora)[:3]
    allowed = (trainable.language_model + ".", *(h + "." for h in [trainable.head()] if h))
    assert all(name.startswith(allowed) for name in lora), sorted(lora)[:3]
    assert any(bool(t.abs().sum() > 0) for name, t in lora.items() if ".lora_B." in name), (
        "LoRA B is still all zero: training did not move the adapter"
    )
    config = json.loads((result.out / "adapter_config.json").read_text())
    assert config["target_modules"] == trainable.lora_target_regex()
    assert (config["r"], config["lora_alpha"]) == (16, 32)

    # The towers are frozen and untouched (compared with the model the index was built with).
    towers = trainable.frozen_towers()
    assert towers, f"{family}: no vision tower found to freeze"
    assert TOWERS.get(family, set()) <= {t.rsplit(".", 1)[-1] for t in towers}, towers
    for tower in towers:
        served = encoder.vision.model if family in PARTNER else encoder.model.get_submodule(tower)  # type: ignore[attr-defined]
        before = dict(served.named_parameters())
        for name, param in trainable.tower_module(tower).named_parameters():
            assert not param.requires_grad, f"{tower}.{name} is trainable"
            assert torch.equal(param.detach(), before[name]), f"{tower}.{name} changed"

    # The saved adapter folder reloads through load_encoder into the model as trained.
    reloaded = load_trained(result.out)
    settings = {k: v for k, v in encoder.info.settings.items() if k != "text_model"}
    assert {k: v for k, v in reloaded.info.settings.items() if k != "text_model"} == settings
    assert reloaded.info.family == family
    queries = ["red", "a cyan page"]
    page = [render_page(docs / "plain.pdf", 3, dpi=DPI)]
    mine = result.trained.encode_queries(queries) + result.trained.encode_images(page)
    theirs = reloaded.encode_queries(queries) + reloaded.encode_images(page)
    for a, b in zip(mine, theirs, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    base = encoder.encode_queries(queries[:1])[0]
    assert not torch.allclose(base, theirs[0], atol=1e-6), "the reloaded adapter changed nothing"

    # --merge: a full checkpoint of the family that gives the adapter's vectors.
    assert result.merged is not None
    merged = load_trained(result.merged)
    assert merged.info.family == family
    for a, b in zip(
        merged.encode_queries(queries[:1]) + merged.encode_images(page), [theirs[0], theirs[-1]], strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
