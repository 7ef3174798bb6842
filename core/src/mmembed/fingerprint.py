"""A checkpoint's identity by content, so that an index can follow its model to another folder.

An index records the encoder that made its vectors (:class:`mmembed.types.EncoderInfo`). Its
``name`` is where the weights were (a local folder's absolute path, or a Hub id), which says
nothing once the folder is copied to another machine. :func:`checkpoint_fingerprint` hashes
what the vectors depend on instead:

- ``config.json``, parsed and re-serialised with sorted keys (reformatting it changes nothing);
- every weight file (``*.safetensors``, ``*.bin``, ``*.pt``, ``*.pth`` at the folder's top
  level, sorted by name): its name, its size, a safetensors file's whole header (every tensor's
  name, dtype, shape and offsets), and 17 blocks of 64 KiB spread evenly over the file, the last
  one ending at its end.

Reading ~1 MiB per file keeps this cheap for 17 GB checkpoints (the weights are being loaded
anyway); a fine-tune, a merged adapter or another seed changes every block. It does not prove
two files byte-identical: an edit confined to bytes between the sampled blocks, with the same
shapes, would go unseen. Torch-free, so metadata commands can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
BLOCKS = 17
BLOCK_BYTES = 64 * 1024
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header

__all__ = ["checkpoint_fingerprint", "combine_fingerprints"]


def checkpoint_fingerprint(folder: str | os.PathLike[str]) -> str | None:
    """``"sha256:<hex>"`` of the checkpoint in ``folder`` (see the module docstring), or
    ``None`` when ``folder`` is not a local folder with a ``config.json`` and weights."""
    path = Path(folder).expanduser()
    config = path / "config.json"
    weights = (
        sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if path.is_dir()
        else []
    )
    if not config.is_file() or not weights:
        return None
    digest = hashlib.sha256()
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    digest.update(b"config\0" + canonical.encode("utf-8") + b"\0")
    for file in weights:
        try:
            _hash_weights(digest, file)
        except OSError:
            return None
    return "sha256:" + digest.hexdigest()


def combine_fingerprints(parts: Iterable[str | None]) -> str | None:
    """One fingerprint for a model made of several checkpoints (e.g. a vision model and its
    text partner); ``None`` if any part has none."""
    values = list(parts)
    if not values or any(v is None for v in values):
        return None
    return "sha256:" + hashlib.sha256("\0".join(str(v) for v in values).encode()).hexdigest()


def _hash_weights(digest: hashlib._Hash, file: Path) -> None:
    size = file.stat().st_size
    digest.update(f"file\0{file.name}\0{size}\0".encode())
    with file.open("rb") as handle:
        if file.suffix == ".safetensors" and size >= 8:
            (length,) = struct.unpack("<Q", handle.read(8))
            if 0 < length <= min(_MAX_HEADER, size - 8):
                digest.update(handle.read(length))
        span = max(size - BLOCK_BYTES, 0)
        for i in range(BLOCKS):
            handle.seek(span * i // (BLOCKS - 1))
            digest.update(handle.read(BLOCK_BYTES))
