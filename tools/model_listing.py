"""Write core/src/mmembed/cli/models.json: what `mmembed models` prints without importing
torch (the families' modules need it). Run after adding or changing a model family:

    .venv/bin/python tools/model_listing.py

tests/core/test_cli_light.py fails while the file differs from ``list_models()``.
"""

from __future__ import annotations

import json

from mmembed.cli.models import LISTING
from mmembed.encoders import list_models

if __name__ == "__main__":
    LISTING.write_text(json.dumps(list_models(), indent=1, default=str) + "\n")
    print(f"wrote {LISTING}")
