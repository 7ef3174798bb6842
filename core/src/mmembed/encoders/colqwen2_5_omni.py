"""ColQwen2.5-Omni: the Qwen2.5-Omni Thinker + ``custom_text_proj`` (128-d), one L2-normalised
vector per token — late interaction over pages, text *and audio*.

Reproduces colpali-engine 0.3.18's ``ColQwen2_5Omni`` / ``ColQwen2_5OmniProcessor``: every input
is one conversation through the checkpoint's chat template with colpali's system turn
(:data:`SYSTEM_PROMPT`) and the generation prompt; pages are ``[image, "Describe the
content."]``, audio clips ``[audio, "Describe the content."]``, queries ``"Query: " + query +
ten <|endoftext|>``, text documents the bare text. Left padding; the Thinker's final hidden
states (colpali replaces the ``lm_head`` with an identity) go through the head. Pages keep the
checkpoint's image-processor limits; audio is 16 kHz mono through the checkpoint's
``WhisperFeatureExtractor`` (padded as the processor pads it, masked in the audio tower).

Media: :meth:`ColQwen2_5OmniEncoder.encode_media` takes audio clips (``MediaClip.audio``) —
the segments ``mmembed index`` cuts from sound files. Clips with video frames are refused:
colpali's video path samples frames itself and is not reproduced here.

Checkpoints: a ``model_type: qwen2_5_omni_thinker`` config declaring ``architectures:
["ColQwen2_5Omni"]`` or with ``custom_text_proj`` in its weights / LoRA adapter
(``vidore/colqwen-omni-v0.1``). Weights in transformers 5's Thinker layout
(``model.language_model.*``, ``model.visual.*``, ``model.audio_tower.*``) or 4.5x's
(``model.layers.*``, ``visual.*``, ``audio_tower.*``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..types import MMEmbedError
from .base import MediaClip
from .checkpoint import CheckpointFacts
from .qwen_vl import qwen_patch_layout
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import run_batched
from .vlm import Prompt, Recipe, VLMEncoder, build_vlm_encoder, has_head, processor_folder, rename_key

if TYPE_CHECKING:
    from ..explain import PatchLayout

FAMILY_ID = "colqwen2_5_omni"
OPTIONS = ("batch_size", "attn_implementation")
# colpali-engine 0.3.18, ColQwen2_5OmniProcessor.
SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)
MEDIA_TEXT = "Describe the content."
QUERY_PREFIX = "Query: "
QUERY_AUGMENTATION = "<|endoftext|>" * 10
_MARK = "\x00mmembed-text\x00"

_RENAMES = (
    (re.compile(r"^base_model\.model\."), ""),
    (re.compile(r"^model\.(language_model|visual|audio_tower)\."), r"model.\1."),
    (re.compile(r"^model\.(layers|embed_tokens|norm|rotary_emb)\."), r"model.language_model.\1."),
    (re.compile(r"^(visual|audio_tower)\."), r"model.\1."),
)
_UNUSED = re.compile(r"^(lm_head|thinker\.lm_head)\.")


def rename_weight(key: str) -> str | None:
    """Any known ColQwen2.5-Omni / Thinker key -> :class:`~mmembed.encoders.vlm.Embedder` name."""
    return rename_key(key, _RENAMES, _UNUSED)


class ColQwen2_5OmniEncoder(VLMEncoder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processor.tokenizer.padding_side = "left"
        self.audio_prompt = _chat(self.processor.tokenizer, "audio")

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.processor(text=texts, return_tensors="pt", padding=True))

    def image_inputs(self, texts: list[str], images: list[Image.Image]) -> dict[str, torch.Tensor]:
        # pixel_values: (total_patches, patch_dim); image_grid_thw: (batch, 3)
        return dict(self.processor(text=texts, images=images, return_tensors="pt", padding=True))

    def image_cost(self, image: Image.Image) -> int:
        patches = int(self.image_processor.get_number_of_image_patches(image.height, image.width))
        return patches // self.image_processor.merge_size**2

    def patch_layout(self, inputs: dict[str, torch.Tensor], ids: torch.Tensor) -> PatchLayout:
        image_token = self.processor.tokenizer.convert_tokens_to_ids(self.recipe.image_token)
        merge = int(self.image_processor.merge_size)
        return qwen_patch_layout(inputs, ids == image_token, merge, self.info.family)

    # -- audio -----------------------------------------------------------------------

    def encode_media(
        self, clips: Sequence[MediaClip], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Audio clips (16 kHz mono), one multi-vector embedding each."""
        rate = int(self.processor.feature_extractor.sampling_rate)
        audios = [_checked_audio(clip, i, rate) for i, clip in enumerate(clips)]
        return run_batched(
            audios,
            [len(a) for a in audios],
            batch_size or self.batch_size,
            self._encode_audio,
            progress=progress,
            desc="audio clips",
        )

    @torch.inference_mode()
    def _encode_audio(self, audios: list[np.ndarray]) -> list[torch.Tensor]:
        prefix, suffix = self.audio_prompt
        texts = [prefix + MEDIA_TEXT + suffix] * len(audios)
        inputs = dict(self.processor(text=texts, audio=audios, return_tensors="pt", padding=True))
        # input_features: (batch, mel_bins, frames); feature_attention_mask: (batch, frames)
        inputs["input_features"] = inputs["input_features"].to(self.dtype)
        return self._forward(inputs)


def _checked_audio(clip: object, index: int, rate: int) -> np.ndarray:
    if not isinstance(clip, MediaClip):
        raise MMEmbedError(f"clip {index} is a {type(clip).__name__}, not a MediaClip")
    if clip.has_video:
        raise MMEmbedError(
            f"clip {index} has video frames; the colqwen2_5_omni encoder takes audio clips only "
            "(index sound, or pass --media-streams audio)"
        )
    if not clip.has_audio or clip.audio is None:
        raise MMEmbedError(f"clip {index} has no audio")
    if clip.sample_rate != rate:
        raise MMEmbedError(f"clip {index} is sampled at {clip.sample_rate} Hz; the model takes {rate} Hz")
    audio = np.asarray(clip.audio, dtype=np.float32)
    if audio.ndim != 1 or not np.isfinite(audio).all():
        raise MMEmbedError(f"clip {index}: audio must be finite mono samples, shape (samples,)")
    return audio


def _chat(tokenizer: Any, media: str | None) -> tuple[str, str]:
    """colpali's conversation (its system turn, one user turn, the generation prompt) rendered
    with the checkpoint's chat template around the user's text: (prefix, suffix)."""
    content: list[dict[str, str]] = [{"type": media}] if media else []
    content.append({"type": "text", "text": _MARK})
    conversation = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": content},
    ]
    if not getattr(tokenizer, "chat_template", None):
        raise MMEmbedError("the checkpoint's tokenizer has no chat template (ColQwen2.5-Omni prompts use it)")
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    if not isinstance(rendered, str) or rendered.count(_MARK) != 1:
        raise MMEmbedError("the checkpoint's chat template does not render one user turn's text once")
    prefix, suffix = rendered.split(_MARK)
    return prefix, suffix


def _recipe(processor: Any) -> Recipe:
    tokenizer = processor.tokenizer
    page_prefix, page_suffix = _chat(tokenizer, "image")
    text_prefix, text_suffix = _chat(tokenizer, None)
    page = Prompt(page_prefix, page_suffix, image=True)
    return Recipe(
        page=page,
        page_text=MEDIA_TEXT,
        interleaved=page,
        query=Prompt(text_prefix + QUERY_PREFIX, QUERY_AUGMENTATION + text_suffix, image=False),
        text_document=Prompt(text_prefix, text_suffix, image=False),
        image_token=processor.image_token,
    )


def _load_processor(facts: CheckpointFacts) -> Any:
    from transformers import Qwen2_5OmniProcessor

    processor = Qwen2_5OmniProcessor.from_pretrained(str(processor_folder(facts)))
    if not getattr(processor.tokenizer, "chat_template", None) and getattr(processor, "chat_template", None):
        processor.tokenizer.chat_template = processor.chat_template
    return processor


def build(request: LoadRequest) -> ColQwen2_5OmniEncoder:
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerModel

    return build_vlm_encoder(
        request,
        family_id=FAMILY_ID,
        kind="multi",
        classes=(Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerModel),
        rename=rename_weight,
        load_processor=lambda _config: _load_processor(request.facts),
        recipe=_recipe,
        encoder_class=ColQwen2_5OmniEncoder,
    )


def matches(facts: CheckpointFacts) -> bool:
    return facts.model_type == "qwen2_5_omni_thinker" and (
        "ColQwen2_5Omni" in facts.architectures or has_head(facts)
    )


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=128,
        description="ColQwen2.5-Omni: Qwen2.5-Omni Thinker + custom_text_proj, late interaction over pages and audio",
        matches=matches,
        build=build,
        known_checkpoints=("vidore/colqwen-omni-v0.1",),
        notes=(
            "3B: needs a GPU for real use. Takes page images, text documents, (image, text) documents "
            "and audio clips (encode_media; `mmembed index` on sound files). LoRA adapters are merged."
        ),
        options=OPTIONS,
    )
)
