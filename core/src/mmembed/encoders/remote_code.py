"""Checkpoints that only run through their own Python code, on explicit opt-in.

Some retrievers publish their modeling code inside the checkpoint only (``config.json``'s
``auto_map``), e.g. ``nvidia/llama-nemotron-colembed-vl-3b-v2`` and
``nvidia/llama-nemoretriever-colembed-1b-v1`` / ``-3b-v1`` (SigLIP2 + Llama 3.2; their code
was written for transformers 4.49 + flash-attn). mmembed never runs such code unless asked
(``load_encoder(name, trust_remote_code=True)``, ``--trust-remote-code``); when asked, it
wraps the model's own ``forward_queries`` / ``forward_passages`` (or ``forward_documents``)
in the :class:`~mmembed.encoders.base.Encoder` API: unpadded per-item tensors, size-sorted
batches with out-of-memory back-off, progress bars. A native family always wins over
remote code: the flag is only consulted when no family matches.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from ..pixels import to_rgb
from ..types import EncoderInfo, MMEmbedError
from .base import Document, Encoder
from .checkpoint import CheckpointFacts
from .registry import LoadRequest, ModelFamily, register_family
from .runtime import run_batched
from .vlm import DEFAULT_BATCH_SIZE

logger = logging.getLogger(__name__)

FAMILY_ID = "remote_code"
OPTION = "trust_remote_code"
OPTIONS = ("batch_size",)
_PROBE_QUERY = "dimension probe"


class RemoteCodeError(MMEmbedError):
    """A checkpoint needs its own code and it was not (or cannot be) run."""


def auto_map(facts: CheckpointFacts) -> dict[str, str]:
    """``config.json``'s ``auto_map`` (class -> ``module.Class``), empty when absent."""
    mapping = facts.config.get("auto_map") or {}
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def code_files(facts: CheckpointFacts) -> list[str]:
    """The Python files ``auto_map`` points at (``repo--module.Class`` names another repo's)."""
    modules = {target.rsplit(".", 1)[0] for target in auto_map(facts).values()}
    return sorted(f"{module.replace('.', '/')}.py" for module in modules)


def refusal(facts: CheckpointFacts) -> RemoteCodeError:
    """Why a checkpoint that only runs through its own code is not loaded, and how to opt in."""
    files = ", ".join(code_files(facts))
    return RemoteCodeError(
        f"{facts.name!r} ({facts.describe()}) matches no family mmembed runs natively; its config.json "
        f"maps to the checkpoint's own Python code ({files}). mmembed runs such code only when asked: "
        f"read those files, then load it with load_encoder({facts.name!r}, trust_remote_code=True) or "
        "`mmembed ... --trust-remote-code`. The code runs with your permissions."
    )


def _check_code_present(facts: CheckpointFacts) -> None:
    if not auto_map(facts):
        raise RemoteCodeError(
            f"trust_remote_code=True was given, but {facts.model_path / 'config.json'} declares no auto_map "
            f"(no code of its own to run) and no native family matches it ({facts.describe()}). "
            "Check that this is the checkpoint you meant; see `mmembed models` for what runs natively."
        )
    missing = [f for f in code_files(facts) if "--" not in f and not (facts.model_path / f).is_file()]
    if missing:
        raise RemoteCodeError(
            f"trust_remote_code=True was given, but the code config.json's auto_map names is missing from "
            f"{facts.model_path}: {', '.join(missing)}. Download the whole checkpoint (code files included)."
        )


def _per_item(output: Any, count: int, what: str) -> list[torch.Tensor]:
    """The model's output (a zero-padded ``(batch, tokens, dim)`` tensor, a list of
    ``(tokens, dim)`` tensors, or ``(batch, dim)`` single vectors) -> one float32 CPU
    ``(n_vectors, dim)`` tensor per item, padding rows (all zero) dropped."""
    rows = list(output) if isinstance(output, (list, tuple)) else list(torch.as_tensor(output).unbind(0))
    if len(rows) != count:
        raise RemoteCodeError(f"the checkpoint's code returned {len(rows)} embeddings for {count} {what}")
    out = []
    for row in rows:
        row = torch.as_tensor(row).detach().float().cpu()
        row = row.reshape(1, -1) if row.ndim == 1 else row.reshape(-1, row.shape[-1])  # (tokens, dim)
        kept = row[row.abs().sum(dim=-1) > 0]  # (real tokens, dim)
        if kept.shape[0] == 0 or bool(torch.isnan(kept).any()):
            raise RemoteCodeError(
                f"the checkpoint's code returned an empty or NaN embedding for one of the {what}"
            )
        out.append(kept)
    return out


class RemoteCodeEncoder(Encoder):
    """The :class:`Encoder` API over a model's own ``forward_queries`` / ``forward_passages``."""

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        revision: str | None,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.info = EncoderInfo(
            name=name, family=FAMILY_ID, kind="multi", dim=0, similarity="maxsim", revision=revision
        )
        probe = self.encode_queries([_PROBE_QUERY])[
            0
        ]  # (tokens, dim): the width is not in a standard config key
        self.info = EncoderInfo(
            name=name,
            family=FAMILY_ID,
            kind="multi",
            dim=int(probe.shape[-1]),
            similarity="maxsim",
            revision=revision,
        )

    def __repr__(self) -> str:
        return f"RemoteCodeEncoder({self.info.name!r}, {type(self.model).__name__}, device={self.device})"

    def _method(self, *names: str) -> Callable[..., Any] | None:
        for name in names:
            method = getattr(self.model, name, None)
            if callable(method):
                return method
        return None

    def _run(
        self,
        items: Sequence[Any],
        sizes: list[int],
        call: Callable[[list[Any]], Any],
        what: str,
        batch_size: int | None,
        progress: bool,
    ) -> list[torch.Tensor]:
        @torch.inference_mode()
        def encode(batch: list[Any]) -> list[torch.Tensor]:
            return _per_item(call(batch), len(batch), what)

        return run_batched(
            list(items), sizes, batch_size or self.batch_size, encode, progress=progress, desc=what
        )

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        if isinstance(queries, str):
            raise MMEmbedError("encode_queries takes a list of strings; use encode_query() for one query")
        for i, query in enumerate(queries):
            if not isinstance(query, str):
                raise MMEmbedError(f"query {i} is a {type(query).__name__}, not a str")
        forward = self._method("forward_queries")
        if forward is None:
            raise RemoteCodeError(
                f"{type(self.model).__name__} (the checkpoint's code) has no forward_queries method"
            )
        return self._run(
            queries,
            [len(q) for q in queries],
            lambda b: forward(b, batch_size=len(b)),
            "queries",
            batch_size,
            progress,
        )

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        pages = [_rgb(image, f"image {i}") for i, image in enumerate(images)]
        passages = self._method("forward_passages", "forward_images")
        if passages is not None:
            call: Callable[[list[Any]], Any] = lambda b: passages(b, batch_size=len(b))  # noqa: E731
            return self._run(pages, _areas(pages), call, "pages", batch_size, progress)
        return self.encode_documents(pages, batch_size=batch_size, progress=progress)

    def encode_text_documents(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Refused: the checkpoints' code embeds pages (``forward_passages``) and queries, and
        taking its query side for documents would silently give them the query prompt."""
        raise RemoteCodeError(
            f"{self.info.name} runs through its own code, which embeds page images and queries but has no "
            "text-document path; embed the pages (encode_images / embed_image) and search them with text queries"
        )

    def encode_documents(
        self, documents: Sequence[Document], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        """Pages and ``(page, text)`` pairs through ``forward_documents`` (pages alone through
        ``forward_passages`` when that is all the code has); text-only documents are refused."""
        corpus: list[dict[str, Any]] = []
        for i, doc in enumerate(documents):
            if isinstance(doc, Image.Image):
                corpus.append({"image": _rgb(doc, f"document {i}"), "text": ""})
            elif isinstance(doc, tuple) and len(doc) == 2 and isinstance(doc[1], str):
                corpus.append({"image": _rgb(doc[0], f"document {i}"), "text": doc[1]})
            else:
                raise MMEmbedError(
                    f"document {i} is a {type(doc).__name__}; checkpoints run through their own code take page "
                    "images and (image, text) pairs"
                )
        forward = self._method("forward_documents")
        if forward is None:
            if any(d["text"] for d in corpus):
                raise RemoteCodeError(
                    f"{type(self.model).__name__} (the checkpoint's code) has no forward_documents: it takes "
                    "page images alone; pass the images without their text"
                )
            return self.encode_images([d["image"] for d in corpus], batch_size=batch_size, progress=progress)
        sizes = _areas([d["image"] for d in corpus])
        return self._run(
            corpus, sizes, lambda b: forward(b, batch_size=len(b)), "documents", batch_size, progress
        )


def _rgb(image: object, what: str) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise MMEmbedError(f"{what} is a {type(image).__name__}, not a PIL.Image.Image")
    if image.width < 1 or image.height < 1:
        raise MMEmbedError(f"{what} is empty ({image.width}x{image.height} pixels)")
    return to_rgb(image)  # alpha composited on white, as the page loader does


def _areas(images: Sequence[Image.Image]) -> list[int]:
    return [image.width * image.height for image in images]


def build(request: LoadRequest) -> RemoteCodeEncoder:
    """Load the checkpoint through its own code (the caller has checked the opt-in)."""
    import transformers

    facts = request.facts
    _check_code_present(facts)
    files = ", ".join(str(facts.model_path / f) for f in code_files(facts))
    message = (
        f"running the code shipped with {facts.name!r} ({files}) because trust_remote_code=True was given"
    )
    logger.warning(message)
    warnings.warn(message, stacklevel=3)
    try:
        model = transformers.AutoModel.from_pretrained(
            str(facts.model_path), trust_remote_code=True, dtype=request.dtype
        )
    except Exception as err:  # remote code fails in arbitrary ways (imports, version pins)
        raise RemoteCodeError(
            f"the code shipped with {facts.name!r} failed to load under transformers {transformers.__version__} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). Such code is often "
            "pinned to the transformers version (and flash-attn) named in the checkpoint's README: run it in "
            "an environment with those versions."
        ) from err
    model = model.to(request.device).eval()
    return RemoteCodeEncoder(
        model,
        name=request.name,
        revision=request.revision,
        device=request.device,
        dtype=request.dtype,
        batch_size=int(request.options.get("batch_size") or DEFAULT_BATCH_SIZE),
    )


def _never(facts: CheckpointFacts) -> bool:
    """Never chosen by matching: only ``trust_remote_code=True`` leads here."""
    return False


FAMILY = register_family(
    ModelFamily(
        id=FAMILY_ID,
        kind="multi",
        similarity="maxsim",
        dim=None,
        description="a checkpoint's own code (auto_map) on explicit opt-in: trust_remote_code=True",
        matches=_never,
        build=build,
        known_checkpoints=(
            "nvidia/llama-nemotron-colembed-vl-3b-v2",
            "nvidia/llama-nemoretriever-colembed-3b-v1",
            "nvidia/llama-nemoretriever-colembed-1b-v1",
        ),
        notes=(
            "Runs forward_queries / forward_passages of the checkpoint's Python code; the NVIDIA SigLIP2 + "
            "Llama 3.2 models need their pinned transformers 4.49 + flash-attn + a GPU. dim read from one "
            "probe query at load (3072 for the 3B models, 2048 for 1B)."
        ),
        options=OPTIONS,
    )
)
