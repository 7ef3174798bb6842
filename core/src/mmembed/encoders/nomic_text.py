"""Nomic Embed Text v1.5 on transformers' native ``NomicBertModel``.

The published checkpoint is ``trust_remote_code``: its ``config.json`` uses Nomic's GPT-2-style
field names (``n_embd``, ``n_layer``, ``rotary_emb_base``, ...) that transformers' own
``NomicBertConfig`` does not read, so mmembed translates them (refusing the variants the
native class cannot express) and lets ``from_pretrained`` map the published weight names
(``encoder.layers.N.attn.Wqkv``, ``emb_ln``, ``mlp.fc11`` ...) through transformers' rename
table for ``nomic_bert``; a missing or unused weight is an error.

Embedding, as the model card computes it: mean of the last hidden states over the attention
mask -> ``layer_norm`` without affine parameters -> the first ``matryoshka_dim`` values -> L2.
Task prefixes (``search_query: ``, ``search_document: ``, ...) are added here, never by the user.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..types import MMEmbedError
from .checkpoint import CheckpointFacts
from .runtime import default_attention, run_batched
from .vlm import skipped_weight_init

logger = logging.getLogger(__name__)

TASK_PREFIXES = {
    "search_query": "search_query: ",
    "search_document": "search_document: ",
    "classification": "classification: ",
    "clustering": "clustering: ",
}
MATRYOSHKA_DIMS = (768, 512, 256, 128, 64)
"""The sizes nomic-embed-text-v1.5 was trained to be truncated to."""


def is_text_checkpoint(facts: CheckpointFacts) -> bool:
    return (
        facts.model_type == "nomic_bert"
        and "NomicBertModel" in facts.architectures
        # Weight names are only known once the weights are on disk (a Hub id is matched on its config).
        and (not facts.weight_names or "encoder.layers.0.attn.Wqkv.weight" in facts.weight_names)
    )


REFERENCE_DEFAULTS: dict[str, Any] = {
    # contrastors' NomicBertConfig (configuration_hf_nomic_bert.py) ...
    "prenorm": False,
    "parallel_block": False,
    "rotary_emb_fraction": 0.0,
    "qkv_proj_bias": True,
    "rotary_emb_base": 10_000,
    "rotary_emb_scale_base": None,
    "rotary_emb_interleaved": False,
    "mlp_fc1_bias": True,
    "mlp_fc2_bias": True,
    "use_rms_norm": False,
    "causal": False,
    "type_vocab_size": 2,
    "pad_vocab_size_multiple": 1,
    "rotary_scaling_factor": None,
    # ... on top of the GPT2Config it subclasses.
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5,
    "pad_token_id": None,
}
"""What Nomic's reference code assumes for a field ``config.json`` leaves out: a missing field
means the same model here as there (never a default of our own)."""

SWIGLU_MULTIPLE = 256
"""The reference's gated MLP rounds its width up to a multiple of this (``NomciBertGatedMLP``)."""


def reference_field(config: dict[str, Any], field: str) -> Any:
    return config[field] if field in config else REFERENCE_DEFAULTS[field]


def swiglu_width(n_inner: int | None, hidden: int) -> int:
    """The reference's gated-MLP width: ``n_inner`` (default ``int(8 * hidden / 3)``) rounded up
    to a multiple of 256, as its weights are shaped."""
    width = int(n_inner) if n_inner is not None else int(8 * hidden / 3)
    return (width + SWIGLU_MULTIPLE - 1) // SWIGLU_MULTIPLE * SWIGLU_MULTIPLE


def padded_vocab(vocab_size: int, multiple: int) -> int:
    """The reference's ``NomicBertModel`` pads ``vocab_size`` up to ``pad_vocab_size_multiple``."""
    multiple = max(int(multiple), 1)
    return (int(vocab_size) + multiple - 1) // multiple * multiple


def native_config(config: dict[str, Any], where: str) -> Any:  # -> transformers.NomicBertConfig
    """Nomic's published ``config.json`` -> transformers' ``NomicBertConfig``: missing fields take
    the reference's defaults (:data:`REFERENCE_DEFAULTS`), the MLP width and vocabulary are
    rounded as the reference rounds them, and what the native class cannot express is refused."""
    from transformers import NomicBertConfig

    supported = {
        "activation_function": "swiglu",
        "prenorm": False,
        "parallel_block": False,
        "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False,
        "rotary_emb_scale_base": None,
        "rotary_scaling_factor": None,
        "qkv_proj_bias": False,
        "mlp_fc1_bias": False,
        "mlp_fc2_bias": False,
        "use_rms_norm": False,
        "causal": False,
    }
    for field, value in supported.items():
        actual = reference_field(config, field)
        if actual != value:
            given = "" if field in config else " (absent: the reference's default)"
            raise MMEmbedError(
                f"{where}: {field}={actual!r}{given} is not supported (transformers' NomicBertModel "
                f"implements nomic-embed-text-v1.5's {field}={value!r})"
            )
    try:
        hidden = int(reference_field(config, "n_embd"))
        positions = int(reference_field(config, "n_positions"))
        pad_token_id = reference_field(config, "pad_token_id")
        return NomicBertConfig(
            vocab_size=padded_vocab(
                reference_field(config, "vocab_size"), reference_field(config, "pad_vocab_size_multiple")
            ),
            hidden_size=hidden,
            num_hidden_layers=int(reference_field(config, "n_layer")),
            num_attention_heads=int(reference_field(config, "n_head")),
            intermediate_size=swiglu_width(reference_field(config, "n_inner"), hidden),
            # The reference reads 2048 for a rotary model given n_positions <= 0.
            max_position_embeddings=positions if positions > 0 else 2048,
            type_vocab_size=int(reference_field(config, "type_vocab_size")),
            layer_norm_eps=float(reference_field(config, "layer_norm_epsilon")),
            # Only the embedding's padding_idx (initialisation, gradients): no effect on outputs.
            pad_token_id=0 if pad_token_id is None else int(pad_token_id),
            rope_parameters={
                "rope_type": "default",
                "rope_theta": float(reference_field(config, "rotary_emb_base")),
            },
        )
    except (TypeError, ValueError) as err:
        raise MMEmbedError(f"{where}: not a Nomic BERT config the reference could build ({err})") from err


@dataclass
class NomicText:
    """The text tower: tokenizer + ``NomicBertModel`` + the model card's pooling."""

    model: Any  # transformers.NomicBertModel
    tokenizer: Any
    name: str
    max_length: int
    device: torch.device
    batch_size: int

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(
        self,
        texts: Sequence[str],
        task: str,
        dim: int,
        *,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> list[torch.Tensor]:
        """``(1, dim)`` float32 CPU per text, with the task's prefix."""
        prefix = TASK_PREFIXES[task]
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise MMEmbedError(f"text {i} is a {type(text).__name__}, not a str")
        prefixed = [prefix + text for text in texts]
        lengths = [len(ids) for ids in self.tokenizer(prefixed, truncation=False, verbose=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if too_long:  # reported, not silent: the tail of these texts is not embedded
            logger.warning(
                "%s: %d text(s) longer than %d tokens were truncated (e.g. text %d: %d tokens); "
                "split long documents into passages to embed all of them",
                self.name,
                len(too_long),
                self.max_length,
                too_long[0],
                lengths[too_long[0]],
            )

        def run(batch: list[str]) -> list[torch.Tensor]:
            return list(self._forward(batch, dim))

        return run_batched(
            prefixed, lengths, batch_size or self.batch_size, run, progress=progress, desc="encoding texts"
        )

    @torch.inference_mode()
    def _forward(self, texts: list[str], dim: int) -> torch.Tensor:
        inputs = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**inputs).last_hidden_state.float()  # (batch, tokens, hidden)
        mask = inputs["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (batch, hidden)
        pooled = F.layer_norm(pooled, (pooled.shape[-1],))
        vectors = F.normalize(pooled[:, :dim], dim=-1)  # (batch, dim)
        return vectors.cpu().unsqueeze(1)  # (batch, 1, dim)


def load_text(
    facts: CheckpointFacts,
    *,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int,
    max_length: int | None,
) -> NomicText:
    from transformers import AutoTokenizer, NomicBertModel

    where = str(facts.model_path / "config.json")
    config = native_config(dict(facts.config), where)
    with skipped_weight_init():
        loaded: Any = NomicBertModel.from_pretrained(
            str(facts.model_path),
            config=config,
            dtype=dtype,
            attn_implementation=default_attention(device),
            output_loading_info=True,
            # Shapes that do not fit come back in the loading info, refused below with our
            # own message (transformers would raise its load-report table instead).
            ignore_mismatched_sizes=True,
        )
    model, loading = loaded
    unused = sorted(loading.get("unexpected_keys") or ())
    if unused:  # like the vision loader: extra tensors (e.g. a pre-training head) are not an error
        logger.warning("%s: ignored %d unused weights, e.g. %s", facts.name, len(unused), unused[:3])
    problems = {kind: sorted(loading.get(kind) or ()) for kind in ("missing_keys", "mismatched_keys")}
    if any(problems.values()):
        detail = "; ".join(
            f"{kind}: {', '.join(map(str, keys[:3]))}" for kind, keys in problems.items() if keys
        )
        raise MMEmbedError(
            f"{facts.name}: its weights do not fit nomic-embed-text-v1.5's layout ({detail}); the checkpoint "
            "is incomplete or of another architecture"
        )
    if facts.adapter is not None:  # e.g. what `mmembed train` writes: LoRA over this model's own names
        from .weights import merge_lora

        with torch.no_grad():
            merge_lora(model, facts.adapter, lambda key: key)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder(facts.path, facts.model_path)))
    limit = int(config.max_position_embeddings)
    if max_length is not None and not 1 <= max_length <= limit:
        raise MMEmbedError(f"max_length={max_length} must be between 1 and the model's {limit} positions")
    return NomicText(
        model=model.eval().requires_grad_(False).to(device),
        tokenizer=tokenizer,
        name=facts.name,
        max_length=max_length or limit,
        device=device,
        batch_size=batch_size,
    )


def tokenizer_folder(*folders: Path) -> Path:
    """The first folder with tokenizer files (an adapter's own, else its base's)."""
    for folder in folders:
        if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
            return folder
    raise MMEmbedError(f"no tokenizer files (tokenizer.json, tokenizer_config.json) in {folders[-1]}")
