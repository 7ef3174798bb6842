"""Omni-Embed-Nemotron: text, images, audio and video in one dense space (Qwen2.5-Omni Thinker).

Long because it is one model family in one file, like every family: four input kinds
(text, image, audio, video), each with its checks and processor call, in the order the
published model runs them.

``nvidia/omni-embed-nemotron-3b`` is recognised from its ``config.json`` (``model_type:
"nvomniembed"`` / ``architectures: ["NVOmniEmbedModel"]``) and run natively on transformers'
``Qwen2_5OmniThinkerModel`` and ``Qwen2_5OmniProcessor`` — NVIDIA's remote code is never
executed. What it computes, as the published model does:

- inputs go through the chat template (``add_generation_prompt=False``): queries as
  ``"query: " + text``, documents as ``"passage: " + text`` followed by their image, video
  frames and / or audio;
- the Thinker's language model runs with **bidirectional** attention (padding-only mask);
  transformers >= 4.53 never calls the ``_update_causal_mask`` override the published code
  relies on, so there it silently runs causal attention (``attention="causal"`` reproduces
  that);
- the last hidden state is mean-pooled over the real tokens and L2-normalised (2048-d);
- images go through the torchvision Qwen2-VL image processor: parity holds against transformers
  4.52.4's fast processor, not its slow PIL default (~1e-3 apart);
- a clip's frames carry their true rate to the processor (it sets the time positions), also a
  short tail segment's (e.g. 5 frames over 2.2 s: 2.27 fps).

Audio and video (:meth:`OmniEmbedEncoder.encode_media`) follow the paper's settings: audio at
16 kHz, at most 2,048,000 samples per clip; video frames at ``video_fps`` (default 2, at most
``max_frames`` = 64 per clip) between 32·14·14 and 64·28·28 pixels. How a clip's two streams
make one vector is the ``fusion`` option, recorded in :attr:`EncoderInfo.settings`:

- ``"late"`` (default, the paper's best): audio and frames embedded separately,
  ``audio_weight * a + (1 - audio_weight) * v`` stored as one (unnormalised) vector, so that
  a query's dot product with it *is* the weighted sum of its two per-stream scores;
- ``"sequence"``: frames then audio in one sequence (the reference's single-vector input);
- ``"interleaved"``: Qwen2.5-Omni's time-aligned interleaving (``use_audio_in_video``);
- ``"audio"`` / ``"video"``: one stream only.

A clip lacking a stream the fusion combines falls back to the stream it has (logged); a clip
lacking the one stream of ``"audio"`` / ``"video"`` is refused with :class:`MissingStreamError`
naming it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..pixels import to_rgb
from ..types import EncoderInfo, MMEmbedError
from .base import Document, Encoder, MediaClip, MultimodalQuery, checked_texts
from .checkpoint import CheckpointFacts, safetensors_files
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import default_attention, run_batched
from .vlm import processor_folder, skipped_weight_init
from .weights import load_weights, merge_lora

logger = logging.getLogger(__name__)

FAMILY_ID = "omni_embed_nemotron"
Fusion = Literal["late", "sequence", "interleaved", "audio", "video"]
FUSIONS: tuple[str, ...] = get_args(Fusion)
QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
SAMPLE_RATE = 16_000
MAX_AUDIO_SAMPLES = 2_048_000  # the paper's limit (128 s at 16 kHz)
MIN_AUDIO_SAMPLES = 1_600  # 0.1 s: shorter tracks give no audio token and count as silent
_AUDIO_PAD_MARGIN = (
    1_600  # > one STFT window (400): the last real frames see zero padding, as in the reference
)
VIDEO_MIN_PIXELS = 32 * 14 * 14
VIDEO_MAX_PIXELS = 64 * 28 * 28
DEFAULT_VIDEO_FPS = 2.0
DEFAULT_MAX_FRAMES = 64
DEFAULT_BATCH_SIZE = 4
_PLACEHOLDERS = ("<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>")
# Processor outputs the Thinker's forward takes (the processor adds bookkeeping keys too).
_MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "video_second_per_grid",
    "input_features",
    "feature_attention_mask",
)


class MissingStreamError(MMEmbedError):
    """A clip lacks the only stream its fusion mode embeds (no audio for ``fusion="audio"``,
    no frames for ``fusion="video"``), or has neither stream."""

    def __init__(self, message: str, clip_index: int) -> None:
        super().__init__(message)
        self.clip_index = clip_index


def matches(facts: CheckpointFacts) -> bool:
    return facts.model_type == "nvomniembed" or "NVOmniEmbedModel" in facts.architectures


def rename(key: str) -> str | None:
    """Published (Thinker of transformers 4.5x: ``model.*``, ``visual.*``, ``audio_tower.*``)
    or transformers-5 (``model.language_model.*``, ``model.visual.*`` ...) names ->
    :class:`OmniEmbedder` names. The language-model head is not used."""
    if key.startswith("lm_head."):
        return None
    for tower in ("visual.", "audio_tower.", "language_model."):
        if key.startswith(f"model.{tower}"):
            return key
        if key.startswith(tower):
            return f"model.{key}"
    if key.startswith("model."):
        return f"model.language_model.{key.removeprefix('model.')}"
    return key


class OmniEmbedder(nn.Module):
    """The Thinker (``model``) with mean pooling: inputs in, ``(batch, hidden)`` L2-normalised
    embeddings out. ``bidirectional`` replaces the language model's causal mask by a
    padding-only one."""

    def __init__(self, thinker: nn.Module, *, bidirectional: bool) -> None:
        super().__init__()
        self.model = thinker
        self.bidirectional = bidirectional
        if bidirectional:
            language_model = cast(nn.Module, thinker.language_model)
            for layer in cast(nn.ModuleList, language_model.layers):
                # SDPA falls back to ``is_causal`` when it gets no mask at all.
                cast(Any, layer).self_attn.is_causal = False
            language_model.register_forward_pre_hook(_padding_only_mask, with_kwargs=True)

    def forward(self, **inputs: Any) -> torch.Tensor:
        hidden = self.model(
            **inputs, use_cache=False, return_dict=True
        ).last_hidden_state  # (batch, tokens, hidden)
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        pooled = ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).float()  # (batch, hidden)
        return torch.nn.functional.normalize(pooled, dim=-1)


def _padding_only_mask(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Forward pre-hook of the language model: its 2-D padding mask -> a prepared
    bidirectional mask for every layer type (a prepared mask is used as given)."""
    from transformers.masking_utils import create_bidirectional_mask

    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        config: Any = module.config
        prepared = create_bidirectional_mask(
            config=config,
            inputs_embeds=kwargs["inputs_embeds"],
            attention_mask=mask,
            allow_is_bidirectional_skip=False,
        )
        kwargs["attention_mask"] = dict.fromkeys(set(config.layer_types), prepared)
    return args, kwargs


@dataclass(frozen=True)
class _Input:
    """One model input: prefixed text and at most one image, one video and one audio track."""

    text: str
    what: str
    image: Image.Image | None = None
    frames: np.ndarray | None = None  # (frames, height, width, 3) uint8
    fps: float = 0.0
    audio: np.ndarray | None = None  # (samples,) float32 at 16 kHz
    interleave: bool = False

    def group(self) -> tuple[bool, bool, bool, bool, float]:
        """Inputs of one group go through the processor together."""
        return (
            self.image is not None,
            self.frames is not None,
            self.audio is not None,
            self.interleave,
            self.fps,
        )

    def size(self) -> int:
        """Rough token count, to sort batches by size."""
        size = len(self.text)
        if self.image is not None:
            size += self.image.width * self.image.height // (28 * 28)
        if self.frames is not None:
            size += self.frames.shape[0] * VIDEO_MAX_PIXELS // (2 * 28 * 28)
        if self.audio is not None:
            size += self.audio.shape[0] // 640  # 25 audio tokens per second
        return size


class OmniEmbedEncoder(Encoder):
    """The :class:`Encoder` API over :class:`OmniEmbedder` and a ``Qwen2_5OmniProcessor``."""

    def __init__(
        self,
        model: OmniEmbedder,
        processor: Any,
        *,
        info: EncoderInfo,
        device: torch.device,
        dtype: torch.dtype,
        fusion: Fusion = "late",
        audio_weight: float = 0.5,
        video_fps: float = DEFAULT_VIDEO_FPS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.device = device
        self.dtype = dtype
        self.fusion = fusion
        self.audio_weight = audio_weight
        self.video_fps = video_fps
        self.max_frames = max_frames
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name!r}, fusion={self.fusion}, device={self.device}, dtype={self.dtype})"

    # -- public API ------------------------------------------------------------------

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        if isinstance(queries, str):
            raise MMEmbedError("encode_queries takes a list of strings; use encode_query() for one query")
        inputs = [
            _Input(QUERY_PREFIX + self._text(q, f"query {i}"), f"query {i}") for i, q in enumerate(queries)
        ]
        return self._run(inputs, batch_size, progress, "queries")

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        inputs = [self._document(image, PASSAGE_PREFIX, f"image {i}") for i, image in enumerate(images)]
        return self._run(inputs, batch_size, progress, "pages")

    def encode_documents(
        self, documents: Sequence[Document], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        inputs = [self._document(doc, PASSAGE_PREFIX, f"document {i}") for i, doc in enumerate(documents)]
        return self._run(inputs, batch_size, progress, "documents")

    def encode_text_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Text documents with the ``passage: `` prefix (as :meth:`encode_documents`)."""
        return self.encode_documents(
            checked_texts(texts, "text document"), batch_size=batch_size, progress=progress
        )

    def encode_queries_multimodal(
        self, queries: Sequence[MultimodalQuery], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Text, image and ``(image, text)`` queries, all with the ``query: `` prefix."""
        inputs = [self._document(q, QUERY_PREFIX, f"query {i}") for i, q in enumerate(queries)]
        return self._run(inputs, batch_size, progress, "queries")

    def encode_media(
        self, clips: Sequence[MediaClip], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """One ``(1, dim)`` embedding per clip, its streams combined as ``fusion`` says."""
        streams = [self._streams(clip, i) for i, clip in enumerate(clips)]
        if self.fusion != "late":
            inputs = [
                self._media_input(i, audio, frames, fps) for i, (audio, frames, fps) in enumerate(streams)
            ]
            return self._run(inputs, batch_size, progress, "clips")
        # Late fusion: every present stream on its own, then one weighted sum per clip.
        inputs, owners = [], []
        for i, (audio, frames, fps) in enumerate(streams):
            if frames is not None:
                inputs.append(_Input(PASSAGE_PREFIX, f"clip {i} (video)", frames=frames, fps=fps))
                owners.append((i, "video"))
            if audio is not None:
                inputs.append(_Input(PASSAGE_PREFIX, f"clip {i} (audio)", audio=audio))
                owners.append((i, "audio"))
        vectors = self._run(inputs, batch_size, progress, "clip streams")
        per_clip: list[dict[str, torch.Tensor]] = [{} for _ in clips]
        for (i, stream), vector in zip(owners, vectors, strict=True):
            per_clip[i][stream] = vector
        return [self._late_fused(parts, i) for i, parts in enumerate(per_clip)]

    def late_fusion(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """``audio_weight * audio + (1 - audio_weight) * video``, not renormalised: a query's
        dot product with it equals the weighted sum of its dot products with each stream."""
        return self.audio_weight * audio + (1.0 - self.audio_weight) * video  # (1, dim)

    # -- inputs ----------------------------------------------------------------------

    def query_inputs(self, queries: Sequence[str]) -> dict[str, Any]:
        """Model inputs of text queries, as :meth:`encode_queries` builds them (``mmembed
        train`` feeds these to the model it trains)."""
        return self.processor_inputs(
            [_Input(QUERY_PREFIX + self._text(q, f"query {i}"), f"query {i}") for i, q in enumerate(queries)]
        )

    def page_inputs(self, images: Sequence[Image.Image]) -> dict[str, Any]:
        """Model inputs of page images, as :meth:`encode_images` builds them."""
        return self.processor_inputs(
            [self._document(image, PASSAGE_PREFIX, f"page {i}") for i, image in enumerate(images)]
        )

    def _text(self, text: object, what: str) -> str:
        if not isinstance(text, str):
            raise MMEmbedError(f"{what} is a {type(text).__name__}, not a str")
        for placeholder in _PLACEHOLDERS:
            if placeholder in text:
                raise MMEmbedError(
                    f"{what} contains the model's media placeholder {placeholder!r}; remove it"
                )
        return text

    def _document(self, doc: object, prefix: str, what: str) -> _Input:
        if isinstance(doc, str):
            return _Input(prefix + self._text(doc, what), what)
        if isinstance(doc, Image.Image):
            return _Input(prefix, what, image=_checked_image(doc, what))
        if isinstance(doc, tuple) and len(doc) == 2 and isinstance(doc[0], Image.Image):
            return _Input(prefix + self._text(doc[1], what), what, image=_checked_image(doc[0], what))
        raise MMEmbedError(
            f"{what} is a {type(doc).__name__}; pass a str (text), a PIL.Image.Image or an (image, text) "
            "tuple (audio and video go through encode_media)"
        )

    def _streams(self, clip: object, index: int) -> tuple[np.ndarray | None, np.ndarray | None, float]:
        """A clip's usable audio ``(samples,)`` and frames ``(frames, h, w, 3)`` (sampled at
        ``video_fps``, at most ``max_frames``), and the frames' rate."""
        if not isinstance(clip, MediaClip):
            raise MMEmbedError(f"clip {index} is a {type(clip).__name__}, not a mmembed.encoders.MediaClip")
        what = f"clip {index} ({clip.start:.1f}-{clip.end:.1f} s)"
        audio = _checked_audio(clip, what) if clip.has_audio else None
        frames, fps = self._sampled_frames(clip, what) if clip.has_video else (None, 0.0)
        if audio is None and frames is None:
            raise MissingStreamError(
                f"{what} has neither audio (of at least {MIN_AUDIO_SAMPLES / SAMPLE_RATE:.1f} s) nor video "
                "frames; nothing to embed",
                index,
            )
        return audio, frames, fps

    def _sampled_frames(self, clip: MediaClip, what: str) -> tuple[np.ndarray, float]:
        frames = list(clip.frames)
        fps = clip.fps if clip.fps > 0 else self.video_fps
        if fps > self.video_fps:  # keep every (fps / video_fps)-th frame
            keep = np.arange(0.0, len(frames), fps / self.video_fps).astype(int)
            if len(keep) > 1:
                # The kept frames' true rate (their mean step), not video_fps: a 2.2 s tail of 5
                # frames (2.27 fps) keeps all 5, still 2.27 fps; 30 fps keeps every 15th, 2 fps.
                fps *= (len(keep) - 1) / float(keep[-1] - keep[0])
            else:
                fps = self.video_fps
            frames = [frames[i] for i in keep]
        if len(frames) > self.max_frames:  # spread max_frames over the clip
            keep = np.linspace(0, len(frames) - 1, self.max_frames).round().astype(int)
            fps *= self.max_frames / len(frames)
            frames = [frames[i] for i in keep]
        sizes = {frame.size for frame in frames}
        if len(sizes) > 1:
            raise MMEmbedError(
                f"{what} has frames of different sizes ({sorted(sizes)}); decode it at one size"
            )
        for frame in frames:
            _checked_image(frame, what)
        return np.stack([np.asarray(to_rgb(frame)) for frame in frames]), fps  # (frames, h, w, 3)

    def _media_input(
        self, index: int, audio: np.ndarray | None, frames: np.ndarray | None, fps: float
    ) -> _Input:
        what = f"clip {index}"
        fusion = self.fusion
        if fusion == "audio" and audio is None:
            raise MissingStreamError(
                f"{what} has no audio track, but fusion='audio' embeds audio only; index it with "
                "fusion='video' or 'late' (which fall back to the frames)",
                index,
            )
        if fusion == "video" and frames is None:
            raise MissingStreamError(
                f"{what} has no video frames (an audio-only recording?), but fusion='video' embeds frames "
                "only; index it with fusion='audio' or 'late'",
                index,
            )
        if fusion == "audio":
            frames = None
        elif fusion == "video":
            audio = None
        elif audio is None or frames is None:
            logger.info(
                "%s has only %s; fusion=%r embeds that stream alone",
                what,
                "audio" if frames is None else "video",
                fusion,
            )
        interleave = fusion == "interleaved" and audio is not None and frames is not None
        return _Input(
            PASSAGE_PREFIX,
            what,
            frames=frames,
            fps=fps if frames is not None else 0.0,
            audio=audio,
            interleave=interleave,
        )

    def _late_fused(self, parts: dict[str, torch.Tensor], index: int) -> torch.Tensor:
        if len(parts) == 2:
            return self.late_fusion(parts["audio"], parts["video"])
        ((stream, vector),) = parts.items()
        logger.info("clip %d has only %s; its late-fused vector is that stream's", index, stream)
        return vector

    # -- running ---------------------------------------------------------------------

    def _run(
        self, inputs: list[_Input], batch_size: int | None, progress: bool, desc: str
    ) -> list[torch.Tensor]:
        results: list[torch.Tensor | None] = [None] * len(inputs)
        groups: dict[tuple[bool, bool, bool, bool, float], list[int]] = {}
        for i, item in enumerate(inputs):
            groups.setdefault(item.group(), []).append(i)
        for indices in groups.values():
            group = [inputs[i] for i in indices]
            outputs = run_batched(
                group,
                [item.size() for item in group],
                batch_size or self.batch_size,
                self._encode_batch,
                progress=progress,
                desc=desc,
            )
            for i, out in zip(indices, outputs, strict=True):
                results[i] = out
        return [r for r in results if r is not None]

    def processor_inputs(self, items: Sequence[_Input]) -> dict[str, Any]:
        """The processor's output for one group of inputs (chat template, media tokens)."""
        conversations = []
        for item in items:
            content: list[dict[str, Any]] = [{"type": "text", "text": item.text}]
            if item.image is not None:
                content.append({"type": "image"})
            if item.frames is not None:
                content.append({"type": "video"})
            if item.audio is not None and not item.interleave:
                content.append({"type": "audio"})
            conversations.append([{"role": "user", "content": content}])
        texts = self.processor.apply_chat_template(conversations, add_generation_prompt=False, tokenize=False)
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        first = items[0]
        if first.image is not None:
            kwargs["images"] = [item.image for item in items]
        if first.frames is not None:
            kwargs["videos"] = [item.frames for item in items]
            kwargs["videos_kwargs"] = {
                "size": {"shortest_edge": VIDEO_MIN_PIXELS, "longest_edge": VIDEO_MAX_PIXELS},
                "do_sample_frames": False,  # frames were sampled at video_fps already
                "cap_pixels_per_frame": False,  # the per-frame limits above are the whole budget
                "fps": first.fps,
            }
        if first.audio is not None:
            kwargs["audio"] = [item.audio for item in items]
            # The processor pads every track to max_length before the log-mel; the reference's
            # 2,048,000 samples cost 128 s of features per clip. Padding a little past the longest
            # track gives the same features on the real frames (the padding is masked out).
            longest = max(item.audio.shape[0] for item in items if item.audio is not None)
            max_length = min(MAX_AUDIO_SAMPLES, longest + _AUDIO_PAD_MARGIN)
            kwargs["audio_kwargs"] = {"max_length": max_length, "sampling_rate": SAMPLE_RATE}
        if first.interleave:
            kwargs["load_audio_from_video"] = True
            kwargs["audio_from_video_indices"] = list(range(len(items)))
        batch = self.processor(**kwargs)
        return {k: batch[k] for k in _MODEL_INPUTS if k in batch}

    @torch.inference_mode()
    def _encode_batch(self, items: list[_Input]) -> list[torch.Tensor]:
        inputs = self.processor_inputs(items)
        moved: dict[str, Any] = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()
        }
        for key in ("pixel_values", "pixel_values_videos", "input_features"):
            if key in moved:
                moved[key] = moved[key].to(self.dtype)
        if items[0].interleave:
            moved["use_audio_in_video"] = True
        embeddings = self.model(**moved)  # (batch, hidden)
        out = [row.unsqueeze(0).float().cpu() for row in embeddings]
        if any(bool(torch.isnan(o).any()) for o in out):
            raise MMEmbedError(
                f"the model produced NaN embeddings on {self.device} with {self.dtype}; try "
                "attn_implementation='eager' or dtype='float32' when loading the encoder."
            )
        return out


def _checked_image(image: object, what: str) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise MMEmbedError(f"{what}: a {type(image).__name__} where a PIL.Image.Image was expected")
    if image.width < 1 or image.height < 1:
        raise MMEmbedError(f"{what} has an empty image ({image.width}x{image.height} pixels)")
    return to_rgb(image)  # alpha composited on white, as the page loader does


def _checked_audio(clip: MediaClip, what: str) -> np.ndarray | None:
    """The clip's audio as ``(samples,)`` float32; ``None`` when too short to give a token."""
    audio = np.asarray(clip.audio, dtype=np.float32)
    if audio.ndim != 1:
        raise MMEmbedError(
            f"{what}: audio must be mono (samples,), got shape {audio.shape}; downmix it first"
        )
    if clip.sample_rate != SAMPLE_RATE:
        raise MMEmbedError(
            f"{what}: audio is at {clip.sample_rate} Hz but the model takes {SAMPLE_RATE} Hz; resample it "
            "(mmembed's media loaders do)"
        )
    if not np.isfinite(audio).all():
        raise MMEmbedError(f"{what}: audio holds NaN or infinite samples")
    if audio.shape[0] > MAX_AUDIO_SAMPLES:
        raise MMEmbedError(
            f"{what}: {audio.shape[0] / SAMPLE_RATE:.1f} s of audio, more than the model's "
            f"{MAX_AUDIO_SAMPLES / SAMPLE_RATE:.0f} s; split the recording into shorter segments"
        )
    if audio.shape[0] < MIN_AUDIO_SAMPLES:
        return None
    return audio


# -- loading ------------------------------------------------------------------------------


def _thinker_config(facts: CheckpointFacts) -> Any:
    from transformers import Qwen2_5OmniThinkerConfig

    data = {k: v for k, v in json.loads((facts.model_path / "config.json").read_text("utf-8")).items()}
    for key in ("model_type", "auto_map", "architectures", "transformers_version"):
        data.pop(key, None)
    return Qwen2_5OmniThinkerConfig.from_dict(data)


def _option(options: dict[str, Any], name: str, default: Any, kind: type) -> Any:
    value = options.get(name)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError) as err:
        raise MMEmbedError(f"option {name}={value!r} must be a {kind.__name__}") from err


def build(request: LoadRequest) -> OmniEmbedEncoder:
    from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerModel

    facts = request.facts
    options = dict(request.options)
    fusion = str(options.get("fusion") or "late")
    if fusion not in FUSIONS:
        raise MMEmbedError(f"fusion={fusion!r} is not one of {', '.join(FUSIONS)}")
    audio_weight = _option(options, "audio_weight", 0.5, float)
    if not 0.0 <= audio_weight <= 1.0 or not math.isfinite(audio_weight):
        raise MMEmbedError(
            f"audio_weight={audio_weight} must lie in [0, 1] (the video weight is 1 - audio_weight)"
        )
    attention = str(options.get("attention") or "bidirectional")
    if attention not in ("bidirectional", "causal"):
        raise MMEmbedError(f"attention={attention!r} must be 'bidirectional' (the model's) or 'causal'")
    video_fps = _option(options, "video_fps", DEFAULT_VIDEO_FPS, float)
    max_frames = _option(options, "max_frames", DEFAULT_MAX_FRAMES, int)
    if not video_fps > 0 or max_frames < 1:
        raise MMEmbedError(f"video_fps ({video_fps}) must be > 0 and max_frames ({max_frames}) >= 1")

    config = _thinker_config(facts)
    attn = options.get("attn_implementation") or default_attention(request.device)
    with skipped_weight_init():  # every weight is loaded from the checkpoint
        thinker = Qwen2_5OmniThinkerModel._from_config(config, dtype=request.dtype, attn_implementation=attn)
        model = OmniEmbedder(thinker, bidirectional=attention == "bidirectional").to(request.dtype)
    load_weights(model, safetensors_files(facts.model_path), rename, source=str(facts.model_path))
    if facts.adapter is not None:  # e.g. what `mmembed train` writes: merged, like every family's
        merge_lora(model, facts.adapter, rename)
    model = model.eval().requires_grad_(False).to(request.device)
    # The config's auto_map names remote code: transformers must not offer to run it.
    processor = Qwen2_5OmniProcessor.from_pretrained(str(processor_folder(facts)), trust_remote_code=False)

    settings: dict[str, Any] = {"fusion": fusion}
    if fusion == "late":
        settings["audio_weight"] = audio_weight
    if attention != "bidirectional":
        settings["attention"] = attention
    if (video_fps, max_frames) != (DEFAULT_VIDEO_FPS, DEFAULT_MAX_FRAMES):
        settings.update(video_fps=video_fps, max_frames=max_frames)
    info = EncoderInfo(
        name=request.name,
        family=FAMILY_ID,
        kind="single",
        dim=int(config.text_config.hidden_size),
        similarity="dot",
        revision=request.revision,
        settings=settings,
    )
    logger.info(
        "loaded %s (%s) on %s as %s, %s attention, fusion=%s",
        request.name,
        FAMILY_ID,
        request.device,
        request.dtype,
        attention,
        fusion,
    )
    return OmniEmbedEncoder(
        model,
        processor,
        info=info,
        device=request.device,
        dtype=request.dtype,
        fusion=cast(Fusion, fusion),
        audio_weight=audio_weight,
        video_fps=video_fps,
        max_frames=max_frames,
        batch_size=_option(options, "batch_size", DEFAULT_BATCH_SIZE, int),
    )


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="single",
        similarity="dot",
        dim=2048,
        description="Omni-Embed-Nemotron (Qwen2.5-Omni Thinker): text, images, audio and video, mean-pooled dense vector",
        matches=matches,
        build=build,
        known_checkpoints=("nvidia/omni-embed-nemotron-3b",),
        notes=(
            "2048-d, bidirectional attention, 'query: ' / 'passage: ' prefixes. Audio 16 kHz up to 128 s "
            "per clip; video at video_fps (2) up to max_frames (64). fusion: late (default) | sequence | "
            "interleaved | audio | video, recorded in the index."
        ),
        options=(
            "batch_size",
            "attn_implementation",
            "fusion",
            "audio_weight",
            "video_fps",
            "max_frames",
            "attention",
        ),
    )
)
