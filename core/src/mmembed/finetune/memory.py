"""Out of memory during training: the batch halves, down to the smallest batch that still
has a negative, then a clear error naming the flags to lower.

An out-of-memory error (CUDA, MPS, XPU or a CPU allocation failure) inside the training loop
frees what it can and restarts the loop with half the batch and twice the gradient
accumulation, so an optimizer step still sees about as many pairs and ``max_steps`` /
``epochs`` keep their meaning (in-batch negatives are fewer: each forward pass holds fewer
pages). The restart resumes from the run's last complete checkpoint, or from the untouched
LoRA weights when there is none yet. The smallest batch is 1 when the run has hard
negatives (they are a query's negatives), else 2 (the in-batch negative).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class BatchPlan:
    """Pairs per forward pass and forward passes per optimizer step."""

    batch_size: int
    accumulation: int

    def describe(self) -> str:
        return f"batch size {self.batch_size}, gradient accumulation {self.accumulation}"


def is_out_of_memory(err: BaseException) -> bool:
    """``err`` is the device or the CPU running out of memory (accelerate's own test, plus
    torch's typed error and Python's ``MemoryError``)."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    from accelerate.utils.memory import should_reduce_batch_size

    return isinstance(err, Exception) and bool(should_reduce_batch_size(err))


def release_memory() -> None:
    """Give back what the failed attempt held (its activations are unreachable once the
    exception and the trainer are gone)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def smallest_batch(negatives: int) -> int:
    """1 with hard negatives (they are the query's negatives), else 2 (one in-batch negative)."""
    return 1 if negatives > 0 else 2


def halved(plan: BatchPlan, floor: int) -> BatchPlan | None:
    """Half the batch, with the accumulation that keeps the pairs per optimizer step about
    the same; ``None`` when the batch is already at ``floor``."""
    if plan.batch_size <= floor:
        return None
    batch = max(floor, plan.batch_size // 2)
    per_step = plan.batch_size * plan.accumulation
    return BatchPlan(batch, max(1, round(per_step / batch)))


def train_with_halving(
    attempt: Callable[[BatchPlan, str | None], T],
    plan: BatchPlan,
    *,
    floor: int,
    resume_from: str | None,
    restart: Callable[[], str | None],
    give_up: Callable[[BatchPlan, BaseException], Exception],
) -> tuple[T, BatchPlan, list[str]]:
    """Run ``attempt(plan, resume_from)``; on out of memory, ``restart()`` (resets the model,
    returns the checkpoint to resume from) and try again with :func:`halved`; at ``floor``,
    raise ``give_up(plan, err)``. Returns the attempt's result, the plan it finished with and
    one line per retry."""
    retries: list[str] = []
    while True:
        try:
            return attempt(plan, resume_from), plan, retries
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            smaller = halved(plan, floor)
            if smaller is None:
                raise give_up(plan, err) from err
        # Outside the ``except``: the error's traceback (and the activations its frames hold)
        # is released before memory is handed back.
        line = f"out of memory at {plan.describe()}: retrying with {smaller.describe()}"
        logger.warning("%s", line)
        retries.append(line)
        release_memory()
        plan = smaller
        resume_from = restart()
