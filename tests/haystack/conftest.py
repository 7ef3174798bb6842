"""Haystack tests run offline: no usage telemetry (it would try to reach the network)."""

from __future__ import annotations

import os

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
