"""Nemotron ColEmbed V2 (4B / 8B): a bidirectional Qwen3-VL, one vector per token, no head.

Reproduces NVIDIA's published reference (``Qwen3VLNemotronEmbedModel`` /
``Qwen3VLNemotronEmbedProcessor``, the remote code shipped with
``nvidia/nemotron-colembed-vl-4b-v2`` and ``-8b-v2``) on transformers' own Qwen3-VL classes:

- every decoder layer attends **bidirectionally** (the mask holds padding only), deepstack
  visual injection kept;
- the embedding is the last decoder layer's output **before** the final RMSNorm (the
  reference skips the norm on purpose), times the attention mask, L2-normalised per token:
  the width is the hidden size (2560 for 4B, 4096 for 8B);
- prompts go through the checkpoint's chat template with the generation prompt: a query is
  one user message ``"Query: query: {q}"``, a document is user content ``[image, "passage:
  {text}"]`` (``text`` empty for a page alone). Queries may take up to 512 tokens with their
  prompt (the reference's ``q_max_length``): the shared ``max_query_tokens`` bound applies,
  lowered to what those 512 leave for the text when that is stricter, so a longer query is cut
  with a warning or refused as ``encoder.query_overflow`` says; a cut query keeps the chat
  template's ending and fills exactly 512 prompted tokens. Documents take up to 4096 tokens
  (``p_max_length``) in all, with at least 100 left beside the image's tokens; longer ones are
  refused. The reference differs here: its ``process_documents`` passes ``p_max_length -
  (largest image tokens in the batch) - 100`` as the length of the *whole* sequence, so it cuts a
  captioned page silently well before 4096 tokens (432 visual tokens + a 3,335-token caption:
  3,564 tokens there, all 3,793 here), its cut depends on the other pages of the batch, and a
  page of more than ~2,000 visual tokens makes it fail (the cut reaches the image tokens);
- pages are resized by Qwen3-VL's smart resize within the checkpoint's pixel limits.

Checkpoints are recognised from ``config.json`` only: ``model_type:
"qwen3_vl_nemotron_embed"`` or the ``Qwen3VLNemotronEmbed*`` classes in ``architectures`` /
``auto_map``. NVIDIA's code never runs. Scoring differs from the reference's ``get_scores``
in one corner: it pads shorter documents with zero vectors that take part in the max, so a
query token whose similarities to a document are all negative scores 0 there; mmembed's
exact MaxSim ignores padding and keeps the (negative) best real similarity.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..types import EncoderInfo, MMEmbedError
from .checkpoint import CheckpointFacts, safetensors_files
from .qwen_vl import IMAGE_TOKEN, OPTIONS, QwenVLEncoder, apply_page_budget, rename_weight
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import default_attention
from .vlm import DEFAULT_BATCH_SIZE, Item, Prompt, Recipe, processor_folder, skipped_weight_init
from .weights import load_weights, merge_lora

logger = logging.getLogger(__name__)

FAMILY_ID = "nemotron_colembed"
MODEL_TYPE = "qwen3_vl_nemotron_embed"
REFERENCE_CLASS_PREFIX = "Qwen3VLNemotronEmbed"
QUERY_PREFIX = "Query: query: "
PASSAGE_PREFIX = "passage: "
MAX_QUERY_TOKENS = 512
MAX_DOCUMENT_TOKENS = 4096
RESERVED_TEXT_TOKENS = 100
"""Tokens kept free beside a page's image tokens (the reference's ``reserve_tokens_for_images``)."""
_MARK = "\x00mmembed-text\x00"
FINAL_NORM = "model.language_model.norm.weight"
"""The final norm's weight in :class:`BidirectionalEmbedder`'s names (loaded, then bypassed)."""


def matches(facts: CheckpointFacts) -> bool:
    auto_map = facts.config.get("auto_map")
    remote_classes = [str(v) for v in auto_map.values()] if isinstance(auto_map, dict) else []
    declared = [*facts.architectures, *remote_classes]
    return facts.model_type == MODEL_TYPE or any(REFERENCE_CLASS_PREFIX in name for name in declared)


class BidirectionalEmbedder(nn.Module):
    """A Qwen3-VL backbone whose text layers attend both ways; ``(batch, tokens, hidden)``
    L2-normalised pre-norm states out, zero rows at padding."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.model = backbone
        self.skipped_norm_weight: torch.Tensor | None = None
        """The final RMSNorm's weight once bypassed: a checkpoint keeps it (``mmembed train
        --merge`` writes it back under :data:`FINAL_NORM`)."""
        text: Any = backbone.language_model  # Qwen3VLTextModel
        # transformers' mask factory builds a padding-only mask for a non-causal config;
        # the layer flags matter where no mask is materialised (SDPA / flash attention).
        text.config.is_causal = False
        for layer in text.layers:
            layer.self_attn.is_causal = False

    def skip_final_norm(self) -> None:
        """The reference reads the last layer's output before the final RMSNorm, whose
        weight the checkpoint still carries (so it is loaded first, then bypassed)."""
        text: Any = self.model.language_model
        norm: Any = text.norm
        if not isinstance(norm, nn.Identity):
            self.skipped_norm_weight = norm.weight.detach().clone()
        text.norm = nn.Identity()

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        hidden = self.model(
            **inputs, use_cache=False, return_dict=True
        ).last_hidden_state  # (batch, tokens, hidden)
        masked = hidden.float() * inputs["attention_mask"].unsqueeze(-1).to(torch.float32)
        return F.normalize(masked, dim=-1)  # (batch, tokens, hidden)


def chat_recipe(processor: Any) -> Recipe:
    """The reference's prompts, rendered by the checkpoint's own chat template."""

    def prompt(content: list[dict[str, str]], image: bool) -> Prompt:
        messages = [{"role": "user", "content": content}]
        try:
            rendered = processor.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except ValueError as err:  # no chat template in the checkpoint
            raise MMEmbedError(
                f"{FAMILY_ID}: the checkpoint's tokenizer has no chat template ({err}); copy the "
                "published checkpoint's chat_template.jinja / chat_template.json into its folder"
            ) from err
        prefix, _, suffix = str(rendered).partition(_MARK)
        return Prompt(prefix, suffix, image=image)

    def text(value: str) -> dict[str, str]:
        return {"type": "text", "text": value}

    page = prompt([{"type": "image"}, text(PASSAGE_PREFIX + _MARK)], image=True)
    return Recipe(
        page=page,
        page_text="",
        interleaved=page,
        query=prompt([text(QUERY_PREFIX + _MARK)], image=False),
        text_document=prompt([text(PASSAGE_PREFIX + _MARK)], image=False),
        image_token=IMAGE_TOKEN,
    )


class NemotronColEmbedEncoder(QwenVLEncoder):
    """Qwen-VL inputs, plus the reference's token budgets as clear errors."""

    def _token_count(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    @cached_property
    def _query_prompt_tokens(self) -> int:
        """Tokens the query prompt adds around the text (the recipe never changes). The
        prompt ends with a space that the text's first token absorbs, so it is measured
        around a one-letter text, not an empty one (which would count the space alone)."""
        return self._token_count(self.recipe.query.render("x")) - self._token_count("x")

    def query_token_limit(self) -> tuple[int, str]:
        """The stricter of ``encoder.max_query_tokens`` and what the reference's 512-token
        query cap (``q_max_length``, its prompt included) leaves for the query text."""
        own = MAX_QUERY_TOKENS - self._query_prompt_tokens
        if self.max_query_tokens <= own:
            return self.max_query_tokens, "encoder.max_query_tokens"
        return own, f"{self.info.family}'s own {MAX_QUERY_TOKENS}-token query limit, its prompt included"

    def _bounded_query(self, text: object, what: str) -> str:
        """The shared bound, then, when the model's own 512 applied, the cut redone on the
        prompted tokens: the text alone may tokenise a few tokens differently from the text
        inside its prompt, and the reference's ``q_max_length`` counts the latter. An
        over-long query then takes exactly 512 tokens with its prompt."""
        bounded = super()._bounded_query(text, what)
        if bounded == text or self.query_token_limit()[1] == "encoder.max_query_tokens":
            return bounded
        return self._cut_in_prompt(str(text))

    def _cut_in_prompt(self, text: str) -> str:
        prompt = self.recipe.query
        # The suffix starts with a special token (<|im_end|>): it never merges with the text.
        keep = MAX_QUERY_TOKENS - self._token_count(prompt.suffix)
        head = prompt.prefix + text
        offsets = self.processor.tokenizer(head, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        while keep > 0:
            cut = head[len(prompt.prefix) : int(offsets[keep - 1][1])]
            if self._token_count(prompt.render(cut)) <= MAX_QUERY_TOKENS:
                return cut
            keep -= 1  # re-tokenising the cut merged differently: one token less
        return ""

    def _text_item(self, prompt: Prompt, text: object, what: str) -> Item:
        item = super()._text_item(prompt, text, what)
        # Queries were bounded by query_token_limit() already; this guards the sum with the
        # prompt (the tokenizer may split text and prompt differently when they are joined).
        limit = MAX_QUERY_TOKENS if prompt is self.recipe.query else MAX_DOCUMENT_TOKENS
        tokens = self._token_count(item.text)
        if tokens > limit:
            raise MMEmbedError(
                f"{what} is {tokens} tokens long with its prompt; {self.info.family} takes at most "
                f"{limit}. Shorten it (or split it into several inputs)."
            )
        return item

    def _image_item(self, prompt: Prompt, text: str, image: object, what: str) -> Item:
        item = super()._image_item(prompt, text, image, what)
        assert item.image is not None
        image_tokens = self._size(item) - len(item.text)  # _size: characters + visual tokens
        text_tokens = self._token_count(item.text) - 1  # the image placeholder is counted above
        budget = MAX_DOCUMENT_TOKENS - image_tokens
        if budget < RESERVED_TEXT_TOKENS:
            raise MMEmbedError(
                f"{what} ({item.image.width}x{item.image.height} pixels) becomes {image_tokens} visual "
                f"tokens, leaving fewer than {RESERVED_TEXT_TOKENS} of the {MAX_DOCUMENT_TOKENS}-token "
                "document budget for text; load the encoder with a smaller max_pixels or "
                "max_num_visual_tokens."
            )
        if text_tokens > budget:
            raise MMEmbedError(
                f"{what}: its text and prompt are {text_tokens} tokens but only {budget} fit beside the "
                f"page's {image_tokens} visual tokens ({MAX_DOCUMENT_TOKENS} in all); shorten the text."
            )
        return item


def build(request: LoadRequest) -> NemotronColEmbedEncoder:
    import transformers

    facts = request.facts
    options = dict(request.options)
    attn = options.get("attn_implementation") or default_attention(request.device)
    # NVIDIA's config class is a Qwen3VLConfig that only adds ``pooling``; read it as one.
    config_dict, _ = transformers.Qwen3VLConfig.get_config_dict(str(facts.model_path))
    config_dict = {k: v for k, v in config_dict.items() if k != "auto_map"} | {"model_type": "qwen3_vl"}
    config = transformers.Qwen3VLConfig.from_dict(config_dict)
    pooling = getattr(config, "pooling", "colbert")
    if pooling != "colbert":
        raise MMEmbedError(
            f"{facts.name}: pooling={pooling!r} in config.json; {FAMILY_ID} runs 'colbert' only"
        )
    with skipped_weight_init():  # every weight is loaded from the checkpoint
        backbone = transformers.Qwen3VLModel._from_config(
            config, dtype=request.dtype, attn_implementation=attn
        )
        model = BidirectionalEmbedder(backbone).to(request.dtype)
    load_weights(model, safetensors_files(facts.model_path), rename_weight, source=str(facts.model_path))
    if facts.adapter is not None:  # e.g. what `mmembed train` writes: merged, like every family's
        merge_lora(model, facts.adapter, rename_weight)
    model.skip_final_norm()
    model = model.eval().requires_grad_(False).to(request.device)
    # The processor configs' auto_map names NVIDIA's processor class: refuse its code (the
    # stock Qwen3-VL processor does the work) rather than let transformers ask on stdin.
    processor = transformers.Qwen3VLProcessor.from_pretrained(
        str(processor_folder(facts)), trust_remote_code=False
    )
    apply_page_budget(processor.image_processor, options)
    hidden = int(config.get_text_config().hidden_size)
    info = EncoderInfo(
        name=request.name,
        family=FAMILY_ID,
        kind="multi",
        dim=hidden,
        similarity="maxsim",
        revision=request.revision,
    )
    logger.info(
        "loaded %s (%s) on %s as %s, %s attention",
        request.name,
        FAMILY_ID,
        request.device,
        request.dtype,
        attn,
    )
    return NemotronColEmbedEncoder(
        model,
        processor,
        chat_recipe(processor),
        info=info,
        device=request.device,
        dtype=request.dtype,
        batch_size=int(options.get("batch_size") or DEFAULT_BATCH_SIZE),
    )


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=None,
        description="Nemotron ColEmbed V2: bidirectional Qwen3-VL, one pre-norm hidden state per token",
        matches=matches,
        build=build,
        known_checkpoints=("nvidia/nemotron-colembed-vl-4b-v2", "nvidia/nemotron-colembed-vl-8b-v2"),
        notes=(
            "dim = hidden size: 2560 (4B), 4096 (8B), 20-32x ColQwen's 128 per token; indexes store "
            "float16 by default. 4B: ~9 GB in bfloat16, 8B: ~17 GB, need a GPU."
        ),
        options=OPTIONS,
    )
)
