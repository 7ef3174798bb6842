"""An index follows its checkpoint by content, not by path (issue 29 item 25): the same weights
in another folder are the same model; other weights at the same path are not; indexes written
before fingerprints keep opening with their recorded path, and with a copy while that path exists."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mmembed
from mmembed.fingerprint import checkpoint_fingerprint
from mmembed.index import open_index
from mmembed.loaders.sample_pdfs import write_sample_pdfs
from mmembed.types import EncoderMismatchError


def _index(folder: Path, checkpoint: Path, docs: Path) -> Path:
    encoder = mmembed.load_encoder(str(checkpoint))
    path = folder / "idx"
    with open_index(path, encoder=encoder.info) as index:
        mmembed.index_documents(docs, index, encoder, dpi=36, thumbnails=False)
    return path


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("identity_docs")
    write_sample_pdfs(folder)
    for pdf in sorted(folder.glob("*.pdf"))[1:]:
        pdf.unlink()  # one PDF is enough
    return folder


def test_a_copied_checkpoint_is_the_same_model(tmp_path: Path, tiny_colqwen2_5: Path, docs: Path) -> None:
    original = shutil.copytree(tiny_colqwen2_5, tmp_path / "models" / "original")
    index_path = _index(tmp_path, original, docs)
    recorded = json.loads((index_path / "manifest.json").read_text())["encoder"]
    assert recorded["fingerprint"] == checkpoint_fingerprint(original)

    moved = tmp_path / "elsewhere" / "same-weights"
    shutil.move(str(original), moved)  # the original path is gone
    # Reformatting config.json changes nothing: it is hashed parsed, keys sorted.
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps(config, indent=4, sort_keys=False))
    copy = mmembed.load_encoder(str(moved))
    with open_index(index_path, encoder=copy.info) as index:
        hits = mmembed.Retriever(index, copy).search("revenue", k=2)
        assert hits and hits[0].score > 0

    changed = shutil.copytree(moved, tmp_path / "changed")
    weights = load_file(str(changed / "model.safetensors"))
    name = sorted(weights)[len(weights) // 2]
    weights[name] = weights[name] + 0.01 * torch.ones_like(weights[name])
    save_file(weights, str(changed / "model.safetensors"), metadata={"format": "pt"})
    other = mmembed.load_encoder(str(changed))
    assert other.info.fingerprint != copy.info.fingerprint
    with pytest.raises(EncoderMismatchError, match=r"\(name: .*checkpoint content"):
        open_index(index_path, encoder=other.info)


def test_an_index_without_fingerprint_keeps_its_path_rule(
    tmp_path: Path, tiny_colqwen2_5: Path, docs: Path
) -> None:
    original = shutil.copytree(tiny_colqwen2_5, tmp_path / "models" / "original")
    index_path = _index(tmp_path, original, docs)
    manifest_file = index_path / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["encoder"]["fingerprint"]  # as written before fingerprints existed
    manifest_file.write_text(json.dumps(manifest))

    same_path = mmembed.load_encoder(str(original))
    open_index(index_path, encoder=same_path.info).close()
    copy_folder = shutil.copytree(original, tmp_path / "copy")
    copy = mmembed.load_encoder(str(copy_folder))
    open_index(index_path, encoder=copy.info).close()  # the recorded folder still exists: compared by content
    shutil.rmtree(original)
    with pytest.raises(EncoderMismatchError, match="was built with encoder"):
        open_index(index_path, encoder=copy.info)  # nothing left to compare with: the old rule
