"""A small test-only audio/video encoder: real, deterministic embeddings of a clip's content.

Sound is described by its energy in octave bands (the spectrum of the decoded samples), and
pictures by the mean colour of the sampled frames; a text query names a pitch ("440 Hz") and/or
a colour ("red"), embedded into the same space. So "a 440 Hz tone" retrieves the segment that
plays 440 Hz, from whatever the loader decoded — nothing is hard-coded. Used to test the media
plumbing (pipeline, CLI, adapters) before, and independently of, the Omni-Embed-Nemotron model.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from mmembed.encoders.base import Encoder, MediaClip
from mmembed.types import EncoderInfo

BAND_EDGES = [62.5 * 2**i for i in range(8)]  # 62.5 Hz … 8 kHz, octave bands
COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}
DIM = len(BAND_EDGES) - 1 + 3


class ToneColourEncoder(Encoder):
    """Single-vector, ``dim`` 10: 7 octave-band energies + 3 mean-colour channels."""

    def __init__(self, name: str = "test/tone-colour") -> None:
        self.info = EncoderInfo(name=name, family="tone_colour", kind="single", dim=DIM, similarity="cosine")
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.clips_encoded = 0

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        out = []
        for query in queries:
            vector = np.zeros(DIM, dtype=np.float32)  # (dim,)
            for hz in re.findall(r"(\d+(?:\.\d+)?)\s*hz", query.lower()):
                vector[: DIM - 3] += _bands_of_pitch(float(hz))
            for word, rgb in COLOURS.items():
                if word in query.lower():
                    vector[DIM - 3 :] += rgb
            out.append(_normalised(vector))
        return out

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        return [_normalised(np.concatenate([np.zeros(DIM - 3), _mean_rgb([image])])) for image in images]

    def encode_media(
        self, clips: Sequence[MediaClip], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        self.clips_encoded += len(clips)
        out = []
        for clip in clips:
            bands = _band_energies(clip.audio, clip.sample_rate) if clip.has_audio else np.zeros(DIM - 3)
            colour = _mean_rgb(clip.frames) if clip.has_video else np.zeros(3)
            out.append(_normalised(np.concatenate([bands, colour])))
        return out


def _band_energies(audio: np.ndarray | None, rate: int) -> np.ndarray:
    assert audio is not None
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2  # (bins,)
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)  # (bins,)
    energies = np.array(
        [spectrum[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(BAND_EDGES)]
    )  # (bands,)
    total = energies.sum()
    return energies / total if total > 0 else energies


def _bands_of_pitch(hz: float) -> np.ndarray:
    return np.array([1.0 if lo <= hz < hi else 0.0 for lo, hi in itertools.pairwise(BAND_EDGES)])


def _mean_rgb(frames: Sequence[Image.Image]) -> np.ndarray:
    pixels = np.concatenate([np.asarray(f.convert("RGB"), dtype=np.float64).reshape(-1, 3) for f in frames])
    return pixels.mean(axis=0) / 255.0  # (3,)


def _normalised(vector: np.ndarray) -> torch.Tensor:
    tensor = torch.tensor(vector, dtype=torch.float32)[None]  # (1, dim)
    return torch.nn.functional.normalize(tensor, dim=-1)
