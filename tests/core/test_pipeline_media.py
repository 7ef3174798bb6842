"""index_documents on folders mixing pages and recordings: segments go to encode_media with
their time spans, pages to encode_images, and an encoder without media support loses nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from media_encoder import ToneColourEncoder
from PIL import Image

import mmembed
from mmembed.encoders.base import MediaClip
from mmembed.loaders.sample_media import tone, write_media
from mmembed.retrieve import Retriever
from mmembed.types import MMEmbedError


@pytest.fixture(scope="module")
def talks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("talks")
    Image.new("RGB", (60, 40), (0, 255, 0)).save(folder / "slide.png")
    # 3 s at 440 Hz then 3 s at 2000 Hz: two segments of 3 s
    write_media(folder / "lecture.flac", audio=np.concatenate([tone(440, 3.0), tone(2000, 3.0)]))
    write_media(folder / "clip.mp4", audio=tone(150, 2.0), colours=[(255, 0, 0), (255, 0, 0)])
    return folder


def test_mixed_folder_indexes_pages_and_segments_and_search_finds_the_time_span(tmp_path, talks):
    encoder = ToneColourEncoder()
    with mmembed.open_index(tmp_path / "idx", encoder=encoder.info) as index:
        report = mmembed.index_documents(talks, index, encoder, batch_size=2, segment_seconds=3.0)
        assert report.ok and not report.issues, report.summary()
        assert report.pages_indexed == 4 and report.segments_indexed == 3 and encoder.clips_encoded == 3
        assert "3 audio/video segment(s)" in report.summary()
        retriever = Retriever(index, encoder)
        best = retriever.search("the part at 2000 Hz", k=1)[0]
        assert Path(best.source).name == "lecture.flac" and best.page == 2
        assert (best.metadata["start"], best.metadata["media"]) == (3.0, "audio")
        assert best.metadata["end"] == pytest.approx(6.0, abs=0.05)
        assert best.to_json()["start"] == 3.0
        red = retriever.search("something red", k=1)[0]
        assert Path(red.source).name == "clip.mp4" and red.metadata["media"] == "video"
        record = index.get([red.id])[0]
        assert record is not None and record.thumbnail  # the middle frame, as a JPEG
        slide = retriever.search("green", k=1)[0]
        assert Path(slide.source).name == "slide.png" and "start" not in slide.metadata
        # a re-run skips every unchanged recording, like unchanged PDFs
        again = mmembed.index_documents(talks, index, encoder, segment_seconds=3.0)
        assert again.pages_indexed == 0 and len(again.files_unchanged) == 3


class PagesOnly(ToneColourEncoder):
    encode_media = mmembed.Encoder.encode_media  # type: ignore[assignment]  # the base refusal


def test_an_encoder_without_media_support_reports_recordings_and_indexes_pages(tmp_path, talks):
    encoder = PagesOnly()
    with mmembed.open_index(tmp_path / "idx", encoder=encoder.info) as index:
        report = mmembed.index_documents(talks, index, encoder)
        assert report.pages_indexed == 1 and index.count() == 1
    assert sorted(i.code for i in report.issues) == ["media_not_loaded", "media_not_loaded"]
    assert "tone_colour encoder" in str(report.issues[0]) and "omni-embed-nemotron" in str(report.issues[0])
    with mmembed.open_index(tmp_path / "strict", encoder=encoder.info) as index, pytest.raises(MMEmbedError):
        mmembed.index_documents(talks, index, encoder, strict=True)


class FailingMedia(ToneColourEncoder):
    def encode_media(self, clips: Sequence[MediaClip], **kw: object) -> list[torch.Tensor]:
        raise MMEmbedError("this model refuses audio")


def test_a_media_refusal_stores_nothing_of_its_batch(tmp_path, talks):
    encoder = FailingMedia()
    with mmembed.open_index(tmp_path / "idx", encoder=encoder.info) as index:
        with pytest.raises(MMEmbedError, match="refuses audio"):
            # batch 1 = clip.mp4 segment + lecture segment 1: refused as a whole
            mmembed.index_documents(talks, index, encoder, batch_size=8, segment_seconds=3.0)
        assert index.count() == 0


def test_reranker_scores_indexed_segments_from_their_stored_vectors(tmp_path, talks):
    from mmembed.retrieve import Candidate, MaxSimReranker

    encoder = ToneColourEncoder()
    with mmembed.open_index(tmp_path / "idx", encoder=encoder.info) as index:
        mmembed.index_documents(talks, index, encoder, segment_seconds=3.0)
        records = [r for r in index.records() if r.source.endswith("lecture.flac")]
        candidates = [Candidate(id=r.id, source=r.source, page=r.page) for r in records]
        reranker = MaxSimReranker(encoder, index)
        order = reranker.rerank("2000 Hz", candidates)
        assert records[order[0][0]].metadata["start"] == 3.0 and reranker.pages_reused == 2
        with pytest.raises(MMEmbedError, match="audio / video segment that is not in the reranker's index"):
            MaxSimReranker(encoder).rerank("2000 Hz", [Candidate(source=records[0].source, page=1)])
