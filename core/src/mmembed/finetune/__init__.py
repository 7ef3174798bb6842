"""Fine-tuning: ``mmembed train`` / :func:`mmembed.train` (see :mod:`mmembed.finetune.api`).

The package is ``finetune``, not ``train``: a subpackage ``mmembed.train`` would replace the
function ``mmembed.train`` on the package as soon as it was imported."""

from __future__ import annotations

from .api import TrainError, TrainResult, TrainSettings, train
from .families import UntrainableFamilyError
from .pairs import PairsError

__all__ = ["PairsError", "TrainError", "TrainResult", "TrainSettings", "UntrainableFamilyError", "train"]
