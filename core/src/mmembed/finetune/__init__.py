"""Fine-tuning: ``mmembed train`` / :func:`mmembed.train` (see :mod:`mmembed.finetune.api`).

The package is ``finetune``, not ``train``: a subpackage ``mmembed.train`` would replace the
function ``mmembed.train`` on the package as soon as it was imported. Names are imported
lazily, so that the CLI's parser can read :mod:`mmembed.finetune.settings` without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "train": "mmembed.finetune.api",
    "TrainError": "mmembed.finetune.api",
    "TrainResult": "mmembed.finetune.api",
    "TrainUsageError": "mmembed.finetune.api",
    "TrainSettings": "mmembed.finetune.settings",
    "UntrainableFamilyError": "mmembed.finetune.families",
    "PairsError": "mmembed.finetune.pairs",
}
__all__ = [
    "PairsError",
    "TrainError",
    "TrainResult",
    "TrainSettings",
    "TrainUsageError",
    "UntrainableFamilyError",
    "train",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmembed.finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .api import TrainError, TrainResult, TrainUsageError, train
    from .families import UntrainableFamilyError
    from .pairs import PairsError
    from .settings import TrainSettings
