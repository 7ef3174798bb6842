"""Cost of each Omni-Embed-Nemotron fusion mode per clip, and how many tokens it feeds the model.

    python benchmarks/media_fusion.py [--checkpoint FOLDER] [--clips 8] [--seconds 10]

Without ``--checkpoint`` a tiny random checkpoint is built (mmembed-testing): the times then
show the pipeline's overhead (processor, audio features, frame resizing) more than the model's,
but the token counts are the real model's (they depend on the processor settings only). Each
clip is synthetic: a tone with noise at 16 kHz and coloured 320x240 frames at 2 fps.
Late fusion runs two forward passes per clip (audio, frames) but stores one vector, so search
cost is the same for every mode.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mmembed.encoders import MediaClip, load_encoder
from mmembed.encoders.omni_embed import FUSIONS, OmniEmbedEncoder


def make_clips(n: int, seconds: float) -> list[MediaClip]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16_000)) / 16_000
    clips = []
    for i in range(n):
        audio = (0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t) + 0.05 * rng.standard_normal(t.shape)).astype(
            np.float32
        )
        frames = tuple(
            Image.new("RGB", (320, 240), (20 * i % 256, 10 * f % 256, 128)) for f in range(int(seconds * 2))
        )
        clips.append(MediaClip(audio=audio, frames=frames, fps=2.0, start=i * seconds, end=(i + 1) * seconds))
    return clips


def tokens_per_clip(encoder: OmniEmbedEncoder, clip: MediaClip) -> int:
    audio, frames, fps = encoder._streams(clip, 0)
    if encoder.fusion == "late":
        items = [encoder._media_input(0, None, frames, fps), encoder._media_input(0, audio, None, 0.0)]
    else:
        items = [encoder._media_input(0, audio, frames, fps)]
    return sum(int(encoder.processor_inputs([item])["input_ids"].shape[1]) for item in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.checkpoint
        if folder is None:
            from mmembed_testing import make_tiny_checkpoint

            folder = make_tiny_checkpoint("omni_embed_nemotron", Path(tmp) / "omni")
        clips = make_clips(args.clips, args.seconds)
        print(f"{args.clips} clips of {args.seconds:.0f} s ({folder})")
        print(f"{'fusion':<12} {'clips/s':>8} {'tokens/clip':>12}")
        for fusion in FUSIONS:
            encoder = load_encoder(folder, fusion=fusion)
            assert isinstance(encoder, OmniEmbedEncoder)
            encoder.encode_media(clips[:1])  # warm-up
            start = time.perf_counter()
            encoder.encode_media(clips, batch_size=4)
            elapsed = time.perf_counter() - start
            print(f"{fusion:<12} {args.clips / elapsed:>8.2f} {tokens_per_clip(encoder, clips[0]):>12}")


if __name__ == "__main__":
    main()
