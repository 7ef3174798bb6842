"""What a finished run writes: a PEFT adapter folder ``load_encoder`` loads like any LoRA
checkpoint (adapter config + safetensors + the processor files + a model card), optionally a
merged full checkpoint beside it.

Layout of ``--out``::

    adapter_config.json          # base_model_name_or_path = the index's model
    adapter_model.safetensors    # base_model.model.<module>.lora_{A,B}.weight
    tokenizer*.json, preprocessor_config.json, ...   # the base's processor files
    README.md                    # model card: data, hyperparameters, before / after
    training.json                # the same, machine-readable
    hard_negatives.jsonl         # what mining chose (and left out) per pair
    merged/                      # --merge: config.json + model.safetensors + processor files
    base/                        # only when the index's model was itself a LoRA adapter: its
                                 # merged weights, the new adapter's base
    checkpoints/                 # while a run is unfinished (removed when it finishes)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..encoders.checkpoint import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_CONFIG, CheckpointFacts
from ..encoders.vlm import processor_folder

PROCESSOR_FILE_PATTERNS = ("*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken")
NOT_PROCESSOR_FILES = {MODEL_CONFIG, ADAPTER_CONFIG, "model.safetensors.index.json", "generation_config.json"}
CARD = "README.md"
TRAINING_JSON = "training.json"
NEGATIVES_FILE = "hard_negatives.jsonl"
CHECKPOINTS = "checkpoints"
MERGED = "merged"


def copy_processor_files(facts: CheckpointFacts, folder: Path, *, source: Path | None = None) -> list[str]:
    """The tokenizer / processor files of the model (its adapter's first, like loading does),
    or of ``source`` (a text-only model's tokenizer folder)."""
    source = source or processor_folder(facts)
    copied = []
    for pattern in PROCESSOR_FILE_PATTERNS:
        for file in sorted(source.glob(pattern)):
            if file.name in NOT_PROCESSOR_FILES or file.name == TRAINING_JSON:
                continue
            shutil.copy2(file, folder / file.name)
            copied.append(file.name)
    return copied


def write_adapter(peft_model: Any, folder: Path, *, base: str) -> None:
    """``adapter_config.json`` + ``adapter_model.safetensors``, pointing at ``base``."""
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    config_path = folder / ADAPTER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # What embedding adapters of the served families say (colpali-engine, Nomic): the
    # registry uses it to tell an embedding LoRA from a chat fine-tune.
    config["task_type"] = "FEATURE_EXTRACTION"
    config["base_model_name_or_path"] = base
    config["inference_mode"] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise RuntimeError(f"peft did not write {ADAPTER_WEIGHTS} in {folder}")


StateToCheckpoint = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""The served module's state dict -> the weights a checkpoint of its family holds (see
:meth:`mmembed.finetune.families.TrainableEncoder.checkpoint_state`)."""


def _as_is(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return state


def write_merged(
    module: nn.Module, facts: CheckpointFacts, folder: Path, *, to_checkpoint: StateToCheckpoint = _as_is
) -> Path:
    """A full checkpoint: the base's ``config.json``, the merged weights under the names the
    family's loader reads, and the processor files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(facts.model_path / MODEL_CONFIG, folder / MODEL_CONFIG)
    state = to_checkpoint(module, dict(module.state_dict()))
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    copy_processor_files(facts, folder)
    return folder


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def model_card(summary: Mapping[str, Any], table: str) -> str:
    """The adapter's README: what it was trained on, how, and what it changed."""
    hp = summary["hyperparameters"]
    data = summary["data"]
    lines = [
        "---",
        "library_name: peft",
        "tags: [mmembed, retrieval, lora]",
        "---",
        "",
        f"# LoRA adapter for {summary['base_model']}",
        "",
        f"Fine-tuned with `mmembed train` (family `{summary['family']}`, {summary['kind']}-vector) on the index "
        f'`{summary["index"]}`. Load it like any mmembed checkpoint: `mmembed.load_encoder("<this folder>")`. '
        "Vectors it makes are not comparable with the old index's: index your pages again into a new folder.",
        "",
        "## Data",
        "",
        f"- training pairs: {data['train_pairs']} ({data['train_pages']} pages, {data['sources']} sources)",
        f"- held-out pairs: {data['held_out_pairs']} on {data['held_out_pages']} pages training never saw",
        f"- hard negatives: {data['negatives']} mined (up to {hp['negatives']} per pair, score below "
        f"{hp['max_neg_ratio']} x the positive's); {data['too_close']} left out as likely false negatives",
        f"- pairs file: `{data['pairs']}`",
        "",
        "## Hyperparameters",
        "",
        *(f"- {key}: {value}" for key, value in hp.items()),
        "",
        "## Held-out evaluation (before / after)",
        "",
        "```",
        table or "(no held-out split)",
        "```",
        "",
    ]
    return "\n".join(lines)


BASE = "base"


@torch.no_grad()
def write_untrained_base(
    peft_model: Any, facts: CheckpointFacts, folder: Path, *, to_checkpoint: StateToCheckpoint = _as_is
) -> Path:
    """The model training started from, as a full checkpoint: for a starting model that was
    itself a LoRA adapter, the new adapter applies to these (merged) weights, not to the old
    adapter's own base."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(facts.model_path / MODEL_CONFIG, folder / MODEL_CONFIG)
    base = peft_model.get_base_model()
    state = {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items() if ".lora_" not in k}
    state = {k: v.detach().to("cpu").contiguous() for k, v in to_checkpoint(base, state).items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    copy_processor_files(facts, folder)
    return folder


@torch.no_grad()
def merged_module(peft_model: Any) -> nn.Module:
    """The trained model with LoRA folded into its weights (peft's ``merge_and_unload``)."""
    module: nn.Module = peft_model.merge_and_unload(safe_merge=True)
    return module
