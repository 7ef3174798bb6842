"""Load test (issue 15): one maximal query and one maximal page cost bounded memory. Run in a
fresh subprocess so its peak RSS (``ru_maxrss``) is this work's alone. Tiny checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = """
import json, resource, sys, warnings
import torch
from PIL import Image
from mmembed.encoders import load_encoder
from mmembed.index import open_index

encoder = load_encoder(sys.argv[1], device="cpu")
page = Image.new("RGB", (600, 400), "white")
index = open_index(sys.argv[2], encoder.info)
from mmembed.index import PageInput
emb = encoder.encode_images([page])[0]
index.add([PageInput(emb, "a.png", 1, "0" * 64)])
encoder.encode_queries(["a short query"])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, after warm-up
warnings.simplefilter("ignore")
query = encoder.encode_queries(["revenue table " * 8000])  # ~110k characters
hits = index.search(query, k=1)
huge = Image.new("L", (9000, 9000), 200)  # ~80 KB as a PNG, 81 M pixels
encoder.encode_images([huge, huge])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_mb": baseline / 1024, "growth_mb": (peak - baseline) / 1024, "hits": len(hits[0])}))
"""


def test_maximal_query_and_page_have_bounded_memory(tiny_colqwen2_5: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "timeout",
            "300",
            sys.executable,
            "-c",
            textwrap.dedent(_SCRIPT),
            str(tiny_colqwen2_5),
            str(tmp_path / "ix"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"load bounds: {result}")
    assert result["hits"] == 1
    # Unbounded, the query alone costs gigabytes (attention over ~25k tokens) and each page
    # ~1 GB of float pixels; bounded, the decoded 81 MB greyscale pages dominate.
    assert result["growth_mb"] < 700, result
