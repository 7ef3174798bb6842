"""Checkpoints that run through their own code: refused by default, wrapped on opt-in.

The checkpoint folder ships a small module written for these tests
(``mmembed_testing/remote_code/modeling_tiny_colembed.py``) with the method names and
return shapes of NVIDIA's SigLIP2 + Llama ColEmbed code (zero-padded ``(batch, tokens, dim)``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mmembed.cli import main
from mmembed.encoders import list_models, load_encoder
from mmembed.encoders.remote_code import RemoteCodeEncoder, RemoteCodeError
from mmembed.types import MMEmbedError
from mmembed_testing.tiny_remote_code import DIM, MODULE, build

QUERIES = ["revenue", "What is the organizational structure of the department?", "énergie"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("remote") / "tiny-remote-colembed")


@pytest.fixture(scope="module")
def encoder(folder: Path) -> RemoteCodeEncoder:
    with pytest.warns(UserWarning, match=rf"running the code shipped with .*{MODULE}\.py"):
        loaded = load_encoder(folder, device="cpu", trust_remote_code=True)
    assert isinstance(loaded, RemoteCodeEncoder)
    return loaded


def page(width: int, height: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_refused_without_the_opt_in(folder: Path) -> None:
    with pytest.raises(RemoteCodeError, match=rf"{MODULE}\.py.*trust_remote_code=True.*--trust-remote-code"):
        load_encoder(folder, device="cpu")


def test_opt_in_wraps_forward_queries_unpadded(encoder: RemoteCodeEncoder) -> None:
    assert (encoder.info.family, encoder.info.kind, encoder.info.dim) == ("remote_code", "multi", DIM)
    together = encoder.encode_queries(QUERIES, batch_size=3)
    # one vector per UTF-8 byte: the padding rows of the model's padded batch are gone
    assert [q.shape for q in together] == [(len(q.encode()), DIM) for q in QUERIES]
    for query, batched in zip(QUERIES, together, strict=True):
        torch.testing.assert_close(encoder.encode_queries([query])[0], batched)
        assert batched.dtype == torch.float32 and batched.device.type == "cpu"


def test_pages_and_interleaved_documents(encoder: RemoteCodeEncoder) -> None:
    pages = [page(64, 96, 0), page(128, 32, 1)]
    encoded = encoder.encode_images(pages, batch_size=2)
    assert [p.shape for p in encoded] == [(2 * 3, DIM), (4 * 1, DIM)]  # 8x8 patches of the 1/4 scale page
    mixed = encoder.encode_documents([pages[0], (pages[1], "caption")], batch_size=2)
    torch.testing.assert_close(mixed[0], encoded[0])
    assert mixed[1].shape == (4 + len("caption"), DIM)
    with pytest.raises(MMEmbedError, match="document 0 is a str"):
        encoder.encode_documents(["text only"])
    # Never the query side in disguise: the checkpoint's code has no text-document path.
    with pytest.raises(RemoteCodeError, match="no text-document path"):
        encoder.encode_text_documents(["text only"])


def test_opt_in_without_code_is_an_actionable_error(tmp_path: Path) -> None:
    broken = build(tmp_path / "no-code", with_code=False)
    with pytest.raises(RemoteCodeError, match=rf"missing from .*{MODULE}\.py.*whole checkpoint"):
        load_encoder(broken, device="cpu", trust_remote_code=True)
    config = json.loads((broken / "config.json").read_text())
    del config["auto_map"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(RemoteCodeError, match="declares no auto_map"):
        load_encoder(broken, device="cpu", trust_remote_code=True)


def test_native_family_wins_over_remote_code() -> None:
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "nemotron_colembed" / "checkpoint"
    # the Nemotron 4B/8B config carries an auto_map too; it still runs natively
    loaded = load_encoder(fixture, device="cpu", trust_remote_code=True)
    assert loaded.info.family == "nemotron_colembed"


def test_listed(encoder: RemoteCodeEncoder) -> None:
    row = next(m for m in list_models() if m["family"] == "remote_code")
    assert "nvidia/llama-nemotron-colembed-vl-3b-v2" in row["checkpoints"]


def test_cli_flag(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "pages"
    images.mkdir()
    page(64, 64, 3).save(images / "page.png")
    index = tmp_path / "index"
    argv = ["index", str(images), "--index", str(index), "--model", str(folder), "-q"]
    assert main(argv) == 1
    assert "--trust-remote-code" in capsys.readouterr().err
    assert main([*argv, "--trust-remote-code", "--device", "cpu"]) == 0
    assert main(["search", "revenue", "--index", str(index), "--trust-remote-code", "--json"]) == 0
    out = capsys.readouterr().out
    hits = json.loads(out[out.index("[") :])
    assert hits and hits[0]["source"].endswith("page.png")
