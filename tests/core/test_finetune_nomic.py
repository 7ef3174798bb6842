"""``mmembed.train`` on Nomic Embed v1.5 beyond the registry test (which trains it with tiles):
the one-vector page (dense dot product), the adapter loading alone as a text-only encoder,
the text checkpoint alone refused, and the tiles loss scoring like search."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import mmembed
from mmembed.finetune import UntrainableFamilyError
from mmembed.finetune.losses import info_nce
from mmembed.finetune.trainer import contrastive_loss
from mmembed_testing.colour_pages import COLOURS, DPI, write_colour_pages


@pytest.fixture(scope="module")
def pdf_and_pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("nomic_pages")
    pages = write_colour_pages(root / "all")
    docs = root / "docs"
    docs.mkdir()
    shutil.copy(pages.docs / "plain.pdf", docs / "plain.pdf")
    pairs = root / "pairs.jsonl"
    rows = [
        {"query": c, "source": str(docs / "plain.pdf"), "page": i + 1}
        for i, c in enumerate(list(COLOURS)[:4])
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return docs, pairs


def test_one_vector_pages_train_and_the_adapter_loads_alone_as_text_only(
    tiny_checkpoint: Callable[..., Path], pdf_and_pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    docs, pairs = pdf_and_pairs
    vision, text = tiny_checkpoint("nomic_v1_5"), tiny_checkpoint("nomic_text_v1_5")
    encoder = mmembed.load_encoder(vision, text_model=str(text), matryoshka_dim=32)
    assert encoder.info.kind == "single"
    with mmembed.open_index(tmp_path / "index", encoder.info) as index:
        mmembed.index_documents([docs], index, encoder, dpi=DPI)
    result = mmembed.train(
        tmp_path / "index",
        pairs,
        tmp_path / "adapter",
        max_steps=2,
        batch_size=2,
        negatives=1,
        eval_fraction=0.25,  # the "after" evaluation runs on the reloaded pair
        gradient_checkpointing=True,  # on the text tower (what LoRA trains)
        learning_rate=1e-2,
        lora_dropout=0.0,
        dpi=DPI,
    )
    assert result.trained is not None and all(torch.isfinite(torch.tensor(result.losses)))
    text_tower = result.trained.trainable.module
    assert any(getattr(m, "gradient_checkpointing", False) for m in text_tower.modules())
    assert result.before is not None and result.after is not None and result.held_out_pairs >= 1
    config = json.loads((result.out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == encoder.info.settings["text_model"]
    assert (result.out / "tokenizer.json").is_file() or (result.out / "tokenizer_config.json").is_file()

    queries = ["red", "a cyan page"]
    trained = result.trained.encode_queries(queries)
    assert all(v.shape == (1, 32) for v in trained)
    pair = mmembed.load_encoder(vision, text_model=str(result.out), matryoshka_dim=32)
    alone = mmembed.load_encoder(result.out, matryoshka_dim=32)
    assert alone.info.family == "nomic_v1_5"
    for loaded in (pair, alone):
        for a, b in zip(trained, loaded.encode_queries(queries), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not torch.allclose(trained[0], encoder.encode_queries(queries[:1])[0], atol=1e-6)
    with pytest.raises(mmembed.MMEmbedError, match="cannot embed images"):
        alone.encode_images([])
    # A new model: the old index refuses it (its fingerprint names the new text tower), and the
    # pages are indexed again with the arguments the CLI prints (the vision model, text_model=adapter).
    assert pair.info.fingerprint != encoder.info.fingerprint
    from mmembed.cli import main

    argv = ["index", str(docs), "--index", str(tmp_path / "new"), "-q", "--device", "cpu", "--dpi", str(DPI)]
    assert main([*argv, *result.index_arguments]) == 0
    with mmembed.open_index(tmp_path / "new", create=False, readonly=True) as new:
        assert new.encoder.settings["text_model"] == str(result.out)
        assert (
            new.encoder.fingerprint
            == mmembed.load_encoder(vision, text_model=str(result.out), matryoshka_dim=32).info.fingerprint
        )

    # Training again from that index (its text tower is an adapter): the new adapter's base is
    # the merged start, written as a text checkpoint beside it.
    again = mmembed.train(
        tmp_path / "new", pairs, tmp_path / "again", max_steps=1, batch_size=2, eval_fraction=0.0,
        learning_rate=1e-2, lora_dropout=0.0, dpi=DPI, negatives=1,
    )  # fmt: skip
    assert again.trained is not None
    config = json.loads((again.out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(again.out / "base")
    twice = mmembed.load_encoder(vision, text_model=str(again.out), matryoshka_dim=32)
    for a, b in zip(again.trained.encode_queries(queries), twice.encode_queries(queries), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_the_text_checkpoint_alone_is_refused_with_why(
    tiny_checkpoint: Callable[..., Path], pdf_and_pairs: tuple[Path, Path], tmp_path: Path
) -> None:
    text = mmembed.load_encoder(tiny_checkpoint("nomic_text_v1_5"))
    mmembed.open_index(tmp_path / "index", text.info).close()
    with pytest.raises(UntrainableFamilyError, match="text_model= this one"):
        mmembed.train(tmp_path / "index", pdf_and_pairs[1], tmp_path / "out")
    assert not (tmp_path / "out").exists()


class _Tiles:
    kind = "multi"

    def embed(self, module: object, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["vectors"]


def test_tiles_loss_scores_a_page_by_its_best_vector_like_search() -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(2, 8, generator=generator), dim=-1)  # (B, D)
    pages = torch.nn.functional.normalize(torch.randn(3, 3, 8, generator=generator), dim=-1)  # (C, V, D)
    batch = {
        "queries": {"vectors": queries},
        "documents": {"vectors": pages, "attention_mask": torch.ones(3, 3, dtype=torch.long)},
        "exclude": torch.zeros(2, 3, dtype=torch.bool),
    }
    loss = contrastive_loss(_Tiles(), torch.nn.Identity(), batch, 0.02)  # type: ignore[arg-type]
    searched = mmembed.scoring.maxsim([q[None] for q in queries], list(pages))  # (B, C)
    torch.testing.assert_close(loss, info_nce(searched, 0.02))
