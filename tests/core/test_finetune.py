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
from typing import Any

import pytest
import torch

import mmembed
from mmembed.finetune import PairsError, TrainError, UntrainableFamilyError
from mmembed_testing.colour_pages import DPI, ColourPages, write_colour_pages

# Small steps of a tiny model: one thread each avoids waiting on the other core (2-core CI).
LEARNING: dict[str, Any] = {
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
        index,
        colour_pages.pairs,
        tmp_path / "adapter",
        eval_pairs=colour_pages.held_out,
        merge=which == "multi",
        **LEARNING,
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

    if which == "multi":  # --merge: a full checkpoint that loads and gives the same vectors
        assert result.merged is not None
        merged = mmembed.load_encoder(result.merged)
        assert merged.info.family == "colqwen2_5"
        torch.testing.assert_close(
            merged.encode_queries(queries)[0], reloaded.encode_queries(queries)[0], atol=1e-5, rtol=0
        )

    # The old index refuses the new model, and says how to re-index.
    old = mmembed.open_index(index, create=False)
    try:
        with pytest.raises(mmembed.EncoderMismatchError, match="re-index"):
            mmembed.Retriever(old, reloaded)
    finally:
        old.close()


def test_a_lora_starting_model_gets_its_merged_weights_as_the_new_base(
    tmp_path: Path, colour_pages: ColourPages, tiny_colqwen2_5_lora: Path
) -> None:
    """An index built with a LoRA adapter (like vidore/colqwen2.5-v0.2) trains on the adapter's
    merged weights; the new adapter points at those, written to <out>/base, and reloads."""
    index = _index(tmp_path, tiny_colqwen2_5_lora, colour_pages)
    result = mmembed.train(
        index, colour_pages.pairs, tmp_path / "adapter", max_steps=2, dpi=DPI, eval_fraction=0.0
    )
    config = json.loads((result.out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(result.out / "base")
    reloaded = mmembed.load_encoder(result.out)
    assert result.trained is not None
    torch.testing.assert_close(
        result.trained.encode_queries(["a red page"])[0],
        reloaded.encode_queries(["a red page"])[0],
        atol=1e-5,
        rtol=0,
    )


# -- mining ----------------------------------------------------------------------------


def test_mining_keeps_likely_false_negatives_and_known_positives_out(
    tmp_path: Path, colour_pages: ColourPages, tiny_colqwen2_5: Path
) -> None:
    """A byte-different copy of the positive's file scores as high as the positive: it is a
    false negative and must be left out by the ratio; the query's other known positive is
    never a negative; every kept negative scores below the ratio."""
    import shutil

    from mmembed.finetune.mining import mine_hard_negatives, threshold
    from mmembed.finetune.pairs import positives_by_query, read_pairs

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("plain.pdf", "striped.pdf"):
        shutil.copy(colour_pages.docs / name, docs / name)
    data = (colour_pages.docs / "plain.pdf").read_bytes()
    (docs / "plain-copy.pdf").write_bytes(data + b"\n% a copy\n")  # another hash, the same pages
    encoder = mmembed.load_encoder(tiny_colqwen2_5)
    index = mmembed.open_index(tmp_path / "index", encoder.info)
    try:
        report = mmembed.index_documents([docs], index, encoder, dpi=DPI)
        assert report.pages_indexed == 24, report.summary()
        pairs_file = tmp_path / "pairs.jsonl"
        plain, striped, copy = (str(docs / n) for n in ("plain.pdf", "striped.pdf", "plain-copy.pdf"))
        rows = [
            {"query": "red", "source": plain, "page": 1},
            {"query": "red", "source": striped, "page": 1},
            {"query": "green", "source": plain, "page": 2},
        ]
        pairs_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        pairs = read_pairs(pairs_file, list(index.records()))
        lookup = {(r.source, r.page): r.id for r in index.records()}
        held = [lookup[(striped, 8)]]
        mined = mine_hard_negatives(
            index, encoder, pairs, positives_by_query(pairs), k=3, max_ratio=0.95, exclude_pages=held
        )
    finally:
        index.close()

    assert [m.positive for m in mined] == [p.page_id for p in pairs]
    red_plain = mined[0]
    negatives = [n.id for n in red_plain.negatives]
    too_close = [n.id for n in red_plain.too_close]
    assert lookup[(copy, 1)] in too_close and lookup[(copy, 1)] not in negatives
    assert len(negatives) == 3
    for row in mined:
        own = {p.page_id for p in pairs if p.query == row.query}
        chosen = [n.id for n in row.negatives]
        assert not own & set(chosen) and not own & {n.id for n in row.too_close}
        # k negatives, or (a positive the random model ranks near the bottom) the whole index looked at
        assert len(chosen) == 3 or len(chosen) + len(row.too_close) == 24 - len(own) - len(held)
        assert held[0] not in chosen
        limit = threshold(row.positive_score, 0.95)
        assert all(n.score < limit for n in row.negatives)
        assert all(n.score >= limit for n in row.too_close)
        assert [n.score for n in row.negatives] == sorted((n.score for n in row.negatives), reverse=True)


# -- bad input: a named error each, nothing written to --out ---------------------------


def _pairs(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _good_rows(pages: ColourPages) -> list[dict[str, object]]:
    return [json.loads(line) for line in pages.pairs.read_text().splitlines()[:6]]


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("missing page", PairsError, r"not in the index .*pairs\.jsonl:7: page 99 of .*plain\.pdf"),
        ("another index", PairsError, "another index"),
        ("empty query", PairsError, r"pairs\.jsonl:2: empty query"),
        ("duplicate", PairsError, r"pairs\.jsonl:7: the same pair as pairs\.jsonl:1"),
        ("bad json", PairsError, r"pairs\.jsonl:3: not JSON"),
    ],
)
def test_bad_pairs_are_refused_before_anything_is_written(
    case: str,
    error: type[Exception],
    message: str,
    multi_index: Path,
    colour_pages: ColourPages,
    tmp_path: Path,
) -> None:
    rows = _good_rows(colour_pages)
    plain = str(colour_pages.docs / "plain.pdf")
    path = tmp_path / "pairs.jsonl"
    if case == "missing page":
        _pairs(path, [*rows, {"query": "nowhere", "source": plain, "page": 99}])
    elif case == "another index":
        _pairs(path, [{"query": "x", "source": "/elsewhere/report.pdf", "page": p} for p in (1, 2)])
    elif case == "empty query":
        _pairs(path, [rows[0], {**rows[1], "query": "   "}, *rows[2:]])
    elif case == "duplicate":
        _pairs(path, [*rows, rows[0]])
    else:
        path.write_text("\n".join([json.dumps(rows[0]), json.dumps(rows[1]), "{not json"]) + "\n")
    out = tmp_path / "adapter"
    with pytest.raises(error, match=message):
        mmembed.train(multi_index, path, out, max_steps=1, dpi=DPI)
    assert not out.exists()


def test_remote_code_model_is_refused_with_the_reason(tmp_path: Path, colour_pages: ColourPages) -> None:
    from mmembed.types import EncoderInfo

    info = EncoderInfo(
        name=str(tmp_path / "some-remote-model"),
        family="remote_code",
        kind="multi",
        dim=8,
        similarity="maxsim",
    )
    mmembed.open_index(tmp_path / "index", info).close()
    out = tmp_path / "adapter"
    with pytest.raises(UntrainableFamilyError, match="runs its own code"):
        mmembed.train(tmp_path / "index", colour_pages.pairs, out)
    assert not out.exists()


def test_out_folder_of_another_run_is_refused(
    multi_index: Path, colour_pages: ColourPages, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match="not empty"):
        mmembed.train(multi_index, colour_pages.pairs, out, max_steps=1, dpi=DPI)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# -- resume: a killed `mmembed train` picks up from its last checkpoint ------------------


def test_killed_cli_run_resumes_from_its_last_checkpoint(
    multi_index: Path, colour_pages: ColourPages, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "adapter"
    argv = [
        "train", "--index", str(multi_index), "--pairs", str(colour_pages.pairs), "--out", str(out),
        "--max-steps", "12", "--save-steps", "2", "--batch-size", "4", "--negatives", "1",
        "--dpi", str(DPI), "--eval-fraction", "0", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "mmembed.cli", *argv], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        time.sleep(0.2)  # trainer_state.json is the checkpoint's last file
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert not (out / "adapter_config.json").exists()
    assert (out / "run.json").is_file() and (out / "hard_negatives.jsonl").is_file()

    # Other settings would train something else: refused, the checkpoints kept.
    with pytest.raises(TrainError, match="other settings"):
        mmembed.train(
            multi_index,
            colour_pages.pairs,
            out,
            max_steps=41,
            save_steps=2,
            batch_size=4,
            negatives=1,
            dpi=DPI,
            eval_fraction=0.0,
        )
    assert (out / "checkpoints").is_dir()

    from mmembed.cli import main

    assert main(argv) == 0
    assert (out / "adapter_config.json").is_file() and not (out / "checkpoints").exists()
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == 12
    assert mmembed.load_encoder(out).info.family == "colqwen2_5"


def test_a_checkpoint_cut_short_by_a_kill_is_passed_over(tmp_path: Path) -> None:
    """A run killed while the Trainer saved ``checkpoint-6`` resumes from ``checkpoint-3`` (the
    newest with its ``trainer_state.json``), not from the partial folder."""
    from mmembed.finetune.api import _last_complete_checkpoint

    checkpoints = tmp_path / "checkpoints"
    assert _last_complete_checkpoint(checkpoints) is None
    for step, complete in ((3, True), (6, False), (10, False)):
        folder = checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    (checkpoints / "checkpoint-x").mkdir()
    assert _last_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-3"
