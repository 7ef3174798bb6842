"""``mmembed.train`` on tiny checkpoints: it learns, it reloads, it resumes, it refuses bad input.

The task (``mmembed_testing.colour_pages``): 32 PDF pages in 4 files, told apart by colour
and pattern; queries name the colour; one page per colour is held out. Both a multi-vector
(ColQwen2.5 layout) and a dense (BiQwen2.5) tiny random checkpoint start at chance on the
held-out pages and must reach at least 3x chance after 40 steps on CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import mmembed
from mmembed_testing.colour_pages import DPI, ColourPages, write_colour_pages

# Small steps of a tiny model: one thread each avoids waiting on the other core (2-core CI).
LEARNING = {
    "max_steps": 40,
    "batch_size": 8,
    "learning_rate": 2e-3,
    "temperature": 0.05,
    "negatives": 1,
    "dpi": DPI,
    "lora_dropout": 0.0,
}
CHANCE = 1 / 8  # eight held-out pages, one relevant per query


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def colour_pages(tmp_path_factory: pytest.TempPathFactory) -> ColourPages:
    return write_colour_pages(tmp_path_factory.mktemp("colour_pages"))


def _index(folder: Path, model: Path, pages: ColourPages) -> Path:
    encoder = mmembed.load_encoder(model)
    path = folder / "index"
    index = mmembed.open_index(path, encoder.info)
    try:
        report = mmembed.index_documents([pages.docs], index, encoder, dpi=DPI)
        assert report.pages_indexed == 32 and not report.issues, report.summary()
    finally:
        index.close()
    return path


@pytest.fixture(scope="module")
def multi_index(tmp_path_factory: pytest.TempPathFactory, colour_pages: ColourPages) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    folder = tmp_path_factory.mktemp("multi")
    return _index(folder, make_tiny_checkpoint("colqwen2_5", folder / "model", seed=0), colour_pages)


@pytest.fixture(scope="module")
def dense_index(tmp_path_factory: pytest.TempPathFactory, colour_pages: ColourPages) -> Path:
    from mmembed_testing import make_tiny_checkpoint

    folder = tmp_path_factory.mktemp("dense")
    return _index(folder, make_tiny_checkpoint("biqwen2_5", folder / "model", seed=0), colour_pages)


@pytest.mark.parametrize("which", ["multi", "dense"])
def test_learns_reloads_and_reproduces_embeddings(
    which: str, request: pytest.FixtureRequest, colour_pages: ColourPages, tmp_path: Path
) -> None:
    index = request.getfixturevalue(f"{which}_index")
    result = mmembed.train(
        index, colour_pages.pairs, tmp_path / "adapter", eval_pairs=colour_pages.held_out, **LEARNING
    )
    print(result.table())
    assert result.before is not None and result.after is not None
    before, after = result.before.metrics["R@1"], result.after.metrics["R@1"]
    assert before <= 2 * CHANCE, f"an untrained random model should be near chance, got {before}"
    assert after >= 3 * CHANCE, f"R@1 on held-out pages {before:.3f} -> {after:.3f}, below 3x chance"
    assert result.steps == LEARNING["max_steps"]

    out = result.out
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert result.table() in (out / "README.md").read_text()
    assert not (out / "checkpoints").exists()
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "FEATURE_EXTRACTION" and config["r"] == 16 and config["lora_alpha"] == 32
    assert "visual" not in config["target_modules"]

    # The saved adapter, loaded like any LoRA checkpoint, reproduces the in-training model.
    reloaded = mmembed.load_encoder(out)
    assert reloaded.info.family == ("colqwen2_5" if which == "multi" else "biqwen2_5")
    assert result.trained is not None
    queries = ["red", "a cyan page"]
    from mmembed.loaders import render_page

    pages = [render_page(colour_pages.docs / "dotted.pdf", 3, dpi=DPI)]
    for mine, theirs in zip(
        result.trained.encode_queries(queries) + result.trained.encode_images(pages),
        reloaded.encode_queries(queries) + reloaded.encode_images(pages),
        strict=True,
    ):
        assert mine.shape == theirs.shape
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)

    # The old index refuses the new model, and says how to re-index.
    old = mmembed.open_index(index, create=False)
    try:
        with pytest.raises(mmembed.EncoderMismatchError, match="re-index"):
            mmembed.Retriever(old, reloaded)
    finally:
        old.close()
