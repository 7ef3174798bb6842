"""Loading safetensors weights into a module, strictly, and merging PEFT LoRA adapters.

Checkpoints of one family come in several key layouts (the layout of the transformers
version they were saved with, colpali-engine's own class, ...). A family gives a
``rename`` function mapping any of them onto its module's state-dict names; loading then
fails loudly on a missing weight rather than leaving it randomly initialised. Adapters are
merged into the weights (``W += alpha / r * B @ A``), so inference runs on plain modules
and needs no ``peft`` at run time.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..types import MMEmbedError
from .checkpoint import ADAPTER_WEIGHTS, AdapterFacts

logger = logging.getLogger(__name__)

Renamer = Callable[[str], "str | None"]
"""Checkpoint tensor name -> state-dict name of the module; ``None`` drops the tensor
on purpose (e.g. a language-model head an embedding model does not use)."""

_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(\.[^.]+)?\.weight$")
_UNSUPPORTED = ("lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")


class WeightLoadError(MMEmbedError):
    """Checkpoint weights do not fit the model built from its config."""


def _state_targets(module: nn.Module) -> dict[str, torch.Tensor]:
    return dict(module.state_dict(keep_vars=False))


def replaced_by_adapter(adapter: AdapterFacts, rename: Renamer) -> set[str]:
    """State-dict names an adapter brings whole (``modules_to_save`` copies, biases): the
    base may lack them, e.g. a plain VLM under an adapter that adds the projection head."""
    names = set()
    for key in adapter.weight_names:
        key = key.removeprefix("base_model.model.")
        if not _LORA_KEY.match(key) and (name := rename(key)) is not None:
            names.add(name)
    return names


@torch.no_grad()
def load_weights(
    module: nn.Module,
    files: Sequence[Path],
    rename: Renamer,
    *,
    source: str,
    provided_elsewhere: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Copy every tensor of ``files`` into ``module`` (converting dtype); raise if a
    state-dict entry is left unfilled (unless in ``provided_elsewhere``) or a shape differs."""
    from safetensors import safe_open

    targets = _state_targets(module)
    filled: set[str] = set()
    unexpected: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open handles are not iterable
                name = rename(key)
                if name is None:
                    continue
                if name not in targets:
                    unexpected.append(key)
                    continue
                tensor = handle.get_tensor(key)
                if tuple(tensor.shape) != tuple(targets[name].shape):
                    raise WeightLoadError(
                        f"{source}: weight {key!r} has shape {tuple(tensor.shape)} but the model built from "
                        f"config.json expects {tuple(targets[name].shape)} for {name!r}; config and weights disagree."
                    )
                targets[name].copy_(tensor)
                filled.add(name)
    missing = sorted(set(targets) - filled - set(provided_elsewhere))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise WeightLoadError(
            f"{source}: the checkpoint has no weights for {shown}. It is incomplete or of another "
            "architecture than its config.json says."
        )
    if unexpected:
        logger.warning("%s: ignored %d unused weights, e.g. %s", source, len(unexpected), unexpected[:3])


def _alpha(config: dict[str, object], module: str, default: float) -> float:
    """PEFT's ``alpha_pattern``: a key matches a module name ending with it."""
    for key, value in dict(config.get("alpha_pattern") or {}).items():  # type: ignore[call-overload]
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


def _check_supported(adapter: AdapterFacts) -> None:
    where = adapter.path / "adapter_config.json"
    if adapter.peft_type.upper() != "LORA":
        raise MMEmbedError(f"{where}: only LoRA adapters are supported, this one is {adapter.peft_type!r}")
    if adapter.config.get("use_dora"):
        raise MMEmbedError(
            f"{where}: DoRA adapters are not supported; merge it with peft's merge_and_unload(), "
            "save the merged model and pass that folder."
        )
    odd = sorted(n for n in adapter.weight_names if any(u in n for u in _UNSUPPORTED))
    if odd:
        raise MMEmbedError(f"{adapter.path / ADAPTER_WEIGHTS}: unsupported adapter tensors, e.g. {odd[0]!r}")


@torch.no_grad()
def merge_lora(module: nn.Module, adapter: AdapterFacts, rename: Renamer) -> None:
    """Fold a PEFT LoRA adapter into ``module``'s weights. Tensors that are not LoRA
    factors (``modules_to_save`` copies, trained biases) replace the module's."""
    from safetensors.torch import load_file

    _check_supported(adapter)
    config = dict(adapter.config)
    alpha = float(config.get("lora_alpha") or 8)
    transpose = bool(config.get("fan_in_fan_out"))
    source = str(adapter.path / ADAPTER_WEIGHTS)
    tensors = {k.removeprefix("base_model.model."): v for k, v in load_file(source).items()}
    targets = _state_targets(module)

    def target_of(key: str) -> str:
        name = rename(key)
        if name is None or name not in targets:
            raise WeightLoadError(
                f"{source}: adapter weight {key!r} does not match any weight of the model; the adapter "
                "was trained for another architecture than its base."
            )
        return name

    factors: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _LORA_KEY.match(key)
        if match:
            factors.setdefault(match["module"], {})[match["which"]] = tensor
            continue
        name = target_of(key)
        if tuple(tensor.shape) != tuple(targets[name].shape):
            raise WeightLoadError(
                f"{source}: {key!r} has shape {tuple(tensor.shape)}, expected {tuple(targets[name].shape)}"
            )
        targets[name].copy_(tensor)

    for module_name, pair in sorted(factors.items()):
        if set(pair) != {"A", "B"}:
            raise WeightLoadError(
                f"{source}: LoRA factors of {module_name!r} are incomplete ({sorted(pair)})"
            )
        lora_a, lora_b = pair["A"].float(), pair["B"].float()  # (r, in), (out, r)
        rank = lora_a.shape[0]
        module_alpha = _alpha(config, module_name, alpha)
        scale = module_alpha / math.sqrt(rank) if config.get("use_rslora") else module_alpha / rank
        delta = (lora_b @ lora_a) * scale  # (out, in)
        weight = targets[target_of(f"{module_name}.weight")]
        if transpose:
            delta = delta.T
        if tuple(delta.shape) != tuple(weight.shape):
            raise WeightLoadError(
                f"{source}: LoRA update of {module_name!r} has shape {tuple(delta.shape)}, "
                f"the weight {tuple(weight.shape)}"
            )
        weight.copy_((weight.float() + delta).to(weight.dtype))
