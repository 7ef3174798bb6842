"""Tiny ColModernVBert / BiModernVBert checkpoints laid out like the published ones.

``ModernVBERT/colmodernvbert`` and ``ModernVBERT/bimodernvbert`` are colpali-engine
checkpoints: ``config.json`` is a ``ModernVBertConfig`` (``model_type: modernvbert``, a
ModernBERT text model and a SigLIP vision model joined by a pixel-shuffle connector) with
``architectures: ["ColModernVBert"]`` / ``["BiModernVBert"]``; the weights are colpali's
class, ``model.{vision_model,connector,text_model}.*`` and, for Col, the 128-d
``custom_text_proj.*``. The processor is Idefics3's (square tiles plus a global view).
``ModernVBERT/colmodernvbert-merged`` is the same model converted for transformers' own
``ColModernVBertForRetrieval`` (``model_type: colmodernvbert``, ``vlm.*`` and
``embedding_proj_layer.*``, a ``ColModernVBertProcessor``).

The builders write those files with ~0.2 M parameters: 32-pixel tiles, 16 image tokens per
tile, pages up to 4x4 tiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from .tiny_qwen_vl import set_processor_class, write_lora_adapter
from .tiny_tokenizers import train_bpe

Variant = Literal["col", "bi", "native"]

EMBEDDING_DIM = 128
TILE = 32
PATCH = 4
PIXEL_SHUFFLE = 2
IMAGE_SEQ_LEN = (TILE // PATCH) ** 2 // PIXEL_SHUFFLE**2
# colpali-engine's training config for ColModernVBert: LoRA on the text model and the head.
LORA_TARGET_MODULES = r"(.*(model\.text_model).*(Wqkv|Wo|Wi).*$|.*(custom_text_proj).*$)"
SPECIAL_TOKENS = (
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[PAD]",
    "[MASK]",
    "<|begin_of_text|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
)
_CORPUS = (
    "The quarterly revenue grew by 12 percent in 2023 compared with 2022.",
    "What is the organizational structure of the research and development department?",
    "User: Describe the image. Assistant: the annual report and the balance sheet.",
    "Les revenus ont augmenté de douze pour cent; die Umsätze stiegen deutlich.",
)


def make_tokenizer(vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer (ModernBERT's kind) with ModernBERT's and the
    Idefics3 processor's special tokens; ``[PAD]`` pads. Deterministic."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Tokenizer

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    vocab, merges = train_bpe(trainer_tok, trainer, _CORPUS)
    tokenizer = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # (left, right) pairs, which the backend takes too
        unk_token="[UNK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True
    )
    return tokenizer


def _image_processor() -> Any:
    from transformers import Idefics3ImageProcessor

    return Idefics3ImageProcessor(
        size={"longest_edge": 4 * TILE},
        max_image_size={"longest_edge": TILE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def vlm_config(tokenizer: Any) -> Any:
    from transformers import ModernVBertConfig

    return ModernVBertConfig(
        text_config={
            "model_type": "modernbert",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "global_attn_every_n_layers": 3,
            "local_attention": 16,  # some layers see a sliding window, as in the real model
            "max_position_embeddings": 8192,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.cls_token_id,
            "eos_token_id": tokenizer.sep_token_id,
            "cls_token_id": tokenizer.cls_token_id,
            "sep_token_id": tokenizer.sep_token_id,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TILE,
            "patch_size": PATCH,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pixel_shuffle_factor=PIXEL_SHUFFLE,
    )


def _save_colpali_processor(folder: Path) -> None:
    """Image-processor, tokenizer and processor configs in separate files, naming
    colpali-engine's processor class (as the published checkpoints do)."""
    _image_processor().save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    settings = {"image_seq_len": IMAGE_SEQ_LEN, "processor_class": "ColModernVBertProcessor"}
    (folder / "processor_config.json").write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    set_processor_class(folder, "ColModernVBertProcessor")


def _weights(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def write_model(folder: Path, *, seed: int, variant: Variant) -> Path:
    """A full (merged) tiny checkpoint: colpali's ``ColModernVBert`` (``col``) /
    ``BiModernVBert`` (``bi``) layout, or transformers' ``ColModernVBertForRetrieval``
    (``native``, saved with its own ``save_pretrained``)."""
    from transformers import ModernVBertModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer()
    config = vlm_config(tokenizer)
    if variant == "native":
        return _write_native(folder, config, tokenizer, seed=seed)
    config.architectures = ["ColModernVBert" if variant == "col" else "BiModernVBert"]
    config.save_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        weights = _weights(ModernVBertModel(config), "model.")
        if variant == "col":
            head = torch.nn.Linear(config.text_config.hidden_size, EMBEDDING_DIM)
            weights.update(_weights(head, "custom_text_proj."))
    save_file(dict(sorted(weights.items())), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _save_colpali_processor(folder)
    return folder


def _write_native(folder: Path, vlm: Any, tokenizer: Any, *, seed: int) -> Path:
    from transformers import ColModernVBertConfig, ColModernVBertForRetrieval, ColModernVBertProcessor

    config = ColModernVBertConfig(vlm_config=vlm.to_dict(), embedding_dim=EMBEDDING_DIM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ColModernVBertForRetrieval(config)
    model.save_pretrained(str(folder))
    tokenizer.padding_side = "left"
    processor = ColModernVBertProcessor(
        image_processor=_image_processor(), tokenizer=tokenizer, image_seq_len=IMAGE_SEQ_LEN
    )
    processor.save_pretrained(str(folder))
    return folder


def build(variant: Variant, path: Path, *, seed: int, lora: bool, layout: str = "legacy") -> Path:
    """Merged: ``path`` is the checkpoint. LoRA (``col`` only): ``path/<variant>-tiny-base``
    and ``path/<variant>-tiny-lora``; the adapter folder is returned. ``layout`` is unused:
    the variant picks the layout."""
    if not lora:
        return write_model(path, seed=seed, variant=variant)
    if variant != "col":
        raise ValueError(f"{variant} ModernVBert checkpoints ship merged only; build with lora=False")
    base = write_model(path / "colmodernvbert-tiny-base", seed=seed, variant=variant)
    return write_lora_adapter(
        path / "colmodernvbert-tiny-lora",
        base,
        seed=seed + 1,
        target_modules=LORA_TARGET_MODULES,
        save_processor=_save_colpali_processor,
    )
