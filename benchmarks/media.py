"""Streaming decode of a long recording: speed and peak memory of ``load_documents``.

    python benchmarks/media.py [--minutes 60] [--format .mp3]

Writes a synthetic recording once (in a child process, so its buffers do not count), then
decodes every segment the way ``index_documents`` does (prefetch 4, each clip released after
use) and prints segments, speed (× real time) and peak RSS next to the size of the whole
recording decoded at once.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, minutes: float) -> None:
    code = (
        "import sys; from mmembed.loaders.sample_media import noise, write_media; "
        f"write_media(sys.argv[1], audio=noise({minutes * 60.0}, amplitude=0.2))"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--format", default=".mp3")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench_media")
    args = parser.parse_args(argv)
    import av  # noqa: F401  # imported before measuring: libraries are not decoded data
    import torch  # noqa: F401  # (MediaClip lives beside the encoders)

    from mmembed.loaders import MediaSegment, load_documents

    args.cache.mkdir(parents=True, exist_ok=True)
    path = args.cache / f"noise_{args.minutes:g}min{args.format}"
    if not path.exists():
        started = time.perf_counter()
        write(path, args.minutes)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    segments = samples = 0
    with load_documents(path) as stream:
        for item in stream:
            assert isinstance(item, MediaSegment)
            audio = item.clip.audio
            samples += 0 if audio is None else audio.size
            segments += 1
            item.release()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{segments} segments, {samples / 16_000 / 60:.1f} min decoded in {seconds:.1f} s "
        f"({samples / 16_000 / seconds:.0f}x real time); peak RSS {peak:.0f} MB ({before:.0f} MB before); "
        f"the whole recording at once would be {samples * 4 / 1e6:.0f} MB of float32"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
