"""Counting what a real processor is given (the "processor runs once per page" tests)."""

from __future__ import annotations

import copy
from typing import Any


class CountingProcessor:
    """The real processor, counting the images it is given."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.images = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.images += len(kwargs.get("images") or [])
        return self.processor(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)


def counting_copy(encoder: Any) -> tuple[Any, CountingProcessor]:
    """A shallow copy of ``encoder`` whose processor counts (the process-wide cached encoder,
    shared with other tests, keeps its own)."""
    copied = copy.copy(encoder)
    counting = CountingProcessor(encoder.processor)
    copied.processor = counting
    return copied, counting
