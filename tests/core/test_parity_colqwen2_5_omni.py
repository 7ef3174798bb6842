"""ColQwen2.5-Omni against colpali-engine 0.3.18 on tiny Qwen2.5-Omni Thinker checkpoints
(float32, CPU, eager attention), merged and as a LoRA adapter: queries, pages of different
sizes, text documents, audio clips of different lengths (batched and one at a time), scores;
the page grid; then pages and an audio recording end to end through the CLI.

colpali-engine's ``ColQwen2_5Omni`` cannot be built by its own ``from_pretrained`` on
transformers 5.23 (its ``__init__`` reads ``config.hidden_size`` and a ``visual`` attribute
that transformers 5 moved), so the reference is constructed from the config with those two
attributes supplied and the checkpoint's state dict loaded strictly; its forward and its
processor run unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmembed.encoders import MediaClip, inspect_checkpoint, list_models, load_encoder, match_family
from mmembed.types import MMEmbedError
from mmembed_testing import parity
from mmembed_testing.parity import unpad

models = pytest.importorskip(
    "colpali_engine.models", reason="reference only: pip install --no-deps colpali-engine==0.3.18"
)


class _Reference:
    def __init__(self, path: Path) -> None:
        from safetensors.torch import load_file
        from transformers import Qwen2_5OmniThinkerConfig

        class ColQwen2_5Omni(models.ColQwen2_5Omni):  # type: ignore[misc,name-defined]
            spatial_merge_size = None  # colpali's setter reads self.visual (moved by transformers 5)

        base = path
        if (path / "adapter_config.json").is_file():
            base = Path(json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"])
        config: Any = Qwen2_5OmniThinkerConfig.from_pretrained(str(base))
        config.hidden_size = config.text_config.hidden_size  # read by colpali's __init__
        config._attn_implementation = "eager"
        model: Any = ColQwen2_5Omni(config)
        model.load_state_dict(load_file(str(base / "model.safetensors")), strict=True)
        if base != path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        self.model = model.eval()
        self.processor = models.ColQwen2_5OmniProcessor.from_pretrained(str(path))

    @torch.no_grad()
    def run(self, batch: Any) -> list[torch.Tensor]:
        return unpad(self.model(**batch), batch["attention_mask"])


def _audios() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(n) * 0.1).astype(np.float32) for n in (16_000, 24_000, 6_000)]


@pytest.fixture(scope="module", params=[False, True], ids=["merged", "lora"])
def case(request: pytest.FixtureRequest, tiny_checkpoint) -> tuple[Any, _Reference]:
    path = tiny_checkpoint("colqwen2_5_omni", lora=request.param)
    return load_encoder(path, device="cpu", dtype="float32"), _Reference(path)


def test_queries_pages_texts_match(case) -> None:
    encoder, reference = case
    assert (encoder.info.family, encoder.info.kind, encoder.info.dim) == ("colqwen2_5_omni", "multi", 128)
    queries = reference.run(reference.processor.process_queries(list(parity.QUERIES)))
    for batch_size in (3, 1):
        parity.assert_embeddings_match(
            encoder.encode_queries(list(parity.QUERIES), batch_size=batch_size), queries
        )
    pages = reference.run(reference.processor.process_images(parity.pages()))
    got_pages = encoder.encode_images(parity.pages(), batch_size=2)
    parity.assert_embeddings_match(got_pages, pages)
    texts = reference.run(reference.processor.process_texts(list(parity.TEXT_DOCUMENTS)))
    parity.assert_embeddings_match(
        encoder.encode_text_documents(list(parity.TEXT_DOCUMENTS), batch_size=2), texts
    )
    from mmembed.scoring import maxsim

    expected = torch.cat([reference.processor.score(queries, [p], device="cpu") for p in pages], dim=1)
    assert (
        parity.relative_error(maxsim(encoder.encode_queries(list(parity.QUERIES)), got_pages), expected)
        < 1e-4
    )


def test_audio_clips_match(case) -> None:
    encoder, reference = case
    audios = _audios()
    expected = reference.run(reference.processor.process_audios(audios))
    for batch_size in (3, 1):
        got = encoder.encode_media(
            [MediaClip(audio=a, end=len(a) / 16_000) for a in audios], batch_size=batch_size
        )
        parity.assert_embeddings_match(got, expected)


def test_refusals_name_the_clip(tiny_checkpoint) -> None:
    from PIL import Image

    encoder = load_encoder(tiny_checkpoint("colqwen2_5_omni"), device="cpu", dtype="float32")
    with pytest.raises(MMEmbedError, match="clip 1 has video frames"):
        encoder.encode_media(
            [MediaClip(audio=_audios()[0]), MediaClip(frames=(Image.new("RGB", (28, 28)),), fps=1)]
        )
    with pytest.raises(MMEmbedError, match="clip 0 is sampled at 8000 Hz"):
        encoder.encode_media([MediaClip(audio=_audios()[0], sample_rate=8000)])


def test_page_grid_covers_the_image_tokens(tiny_checkpoint) -> None:
    encoder: Any = load_encoder(tiny_checkpoint("colqwen2_5_omni"), device="cpu", dtype="float32")
    for page in parity.pages():
        inputs = encoder.image_processor(images=[page], return_tensors="pt")
        _, grid_h, grid_w = (int(v) for v in inputs["image_grid_thw"][0])
        layout = encoder.page_layout(page)
        assert layout is not None and (layout.rows, layout.cols) == (grid_h // 2, grid_w // 2)


def test_dispatch_listing_and_cli_pages_and_audio(
    tiny_checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("av", reason="mmembed-core[media]")
    from mmembed.cli import main
    from mmembed.loaders.sample_media import tone, write_media
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    path = tiny_checkpoint("colqwen2_5_omni")
    assert match_family(inspect_checkpoint(path)).id == "colqwen2_5_omni"
    assert "colqwen2_5_omni" in {row["family"] for row in list_models()}
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(sorted(write_sample_pdfs(tmp_path / "pdfs"))[0], docs)
    write_media(docs / "talk.wav", audio=np.concatenate([tone(300, 2.0), tone(3000, 2.0)]))
    index = tmp_path / "idx"
    code = main(
        [
            "index",
            str(docs),
            "--index",
            str(index),
            "--model",
            str(path),
            "-q",
            "--dpi",
            "24",
            "--segment-seconds",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(2 audio/video segment(s))" in out
    assert main(["search", "--index", str(index), "a whistle", "-k", "10", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {Path(h["source"]).name for h in hits} >= {"talk.wav"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
