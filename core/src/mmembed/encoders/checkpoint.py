"""Finding a checkpoint and reading what it is, without loading any weights.

A checkpoint is either a full model folder (``config.json`` + safetensors) or a PEFT
adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) whose
``base_model_name_or_path`` names the full model underneath. Either can be a local folder
or a Hugging Face Hub repository. :func:`inspect_checkpoint` gathers the facts the
registry dispatches on (``model_type``, ``architectures``, weight names, adapter targets);
weights are only fetched by :meth:`CheckpointFacts.fetch_weights` once a family is chosen.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..types import MMEmbedError

ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# What dispatch needs from the Hub: configs, the shard index and the (small) adapter weights.
_METADATA_PATTERNS = ["*.json", ADAPTER_WEIGHTS]
_WEIGHT_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.jinja",
    "*.model",
    "artifact.metadata",
]  # last: Stanford ColBERT


class CheckpointNotFoundError(MMEmbedError):
    """A name is neither a local folder nor reachable on the Hugging Face Hub."""


class CheckpointFormatError(MMEmbedError):
    """A folder exists but is not a checkpoint mmembed can read."""


def _download_hint(repo: str) -> str:
    folder = repo.rstrip("/").split("/")[-1] or "model"
    return (
        f"`hf download {repo} --local-dir ./{folder}` (`huggingface-cli download` with older huggingface_hub)"
    )


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else was meant as a folder."""
    return Path(name).is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name


def _snapshot(repo: str, revision: str | None, patterns: list[str]) -> Path:
    """A local snapshot of a Hub repository (from the cache when offline)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as err:  # the hub raises many unrelated types (HTTP, validation, offline, OS)
        raise CheckpointNotFoundError(
            f"{repo!r} is neither a local folder nor reachable on the Hugging Face Hub "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}). "
            f"Pass the path of a local checkpoint folder, or download the weights first with "
            f"{_download_hint(repo)} and pass that folder."
        ) from err


def locate(name_or_path: str | os.PathLike[str], revision: str | None = None) -> tuple[Path, str | None]:
    """The local folder of ``name_or_path`` and, when it came from the Hub, its repo id."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve(), None
    if path.exists():
        raise CheckpointFormatError(f"{str(path)!r} is a file; pass the checkpoint folder that contains it")
    repo = str(name_or_path)
    if _looks_like_path(repo):
        raise CheckpointNotFoundError(
            f"there is no checkpoint folder at {repo!r}. Pass an existing folder, or a Hugging Face "
            "Hub id such as 'vidore/colqwen2.5-v0.2'."
        )
    return _snapshot(repo, revision, _METADATA_PATTERNS), repo


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointFormatError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path} does not hold a JSON object")
    return data


def safetensors_files(folder: Path) -> list[Path]:
    """The model weight files of ``folder`` (the adapter's own file excluded)."""
    return sorted(p for p in folder.glob("*.safetensors") if p.name != ADAPTER_WEIGHTS)


def _safetensors_names(files: Iterable[Path]) -> set[str]:
    from safetensors import safe_open

    names: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:  # reads the header only
            names.update(handle.keys())
    return names


def weight_names(folder: Path) -> frozenset[str]:
    """Tensor names of a model folder: from the shard index when there is one (so that
    nothing large must be present), else from the safetensors headers."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map", {})
        if isinstance(weight_map, dict):
            return frozenset(weight_map)
    return frozenset(_safetensors_names(safetensors_files(folder)))


def module_names(tensor_names: Iterable[str]) -> set[str]:
    """Dotted module paths of tensor names, PEFT prefixes and suffixes removed:
    ``base_model.model.x.y.lora_A.weight`` -> ``x.y``."""
    modules = set()
    for name in tensor_names:
        name = name.removeprefix("base_model.model.")
        module, n_subs = _PEFT_SUFFIX.subn("", name)
        if n_subs == 0:  # a plain parameter: drop its own name
            module = name.rsplit(".", 1)[0] if "." in name else name
        modules.add(module)
    return modules


_PEFT_SUFFIX = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)(\.[^.]+)*$")


def _has_module(modules: Iterable[str], module: str) -> bool:
    return any(m == module or m.endswith(f".{module}") for m in modules)


@dataclass(frozen=True)
class AdapterFacts:
    """A PEFT adapter folder."""

    path: Path
    config: Mapping[str, Any]
    weight_names: frozenset[str]

    @property
    def peft_type(self) -> str:
        return str(self.config.get("peft_type", ""))

    @property
    def base_name(self) -> str:
        return str(self.config.get("base_model_name_or_path") or "")

    @property
    def target_modules(self) -> str | tuple[str, ...]:
        targets = self.config.get("target_modules") or ()
        return targets if isinstance(targets, str) else tuple(str(t) for t in targets)

    @property
    def modules_to_save(self) -> tuple[str, ...]:
        return tuple(str(m) for m in self.config.get("modules_to_save") or ())

    def mentions(self, module: str) -> bool:
        """Whether the adapter touches ``module``: LoRA target (list or regex),
        ``modules_to_save``, or a saved weight."""
        targets = self.target_modules
        if isinstance(targets, str):
            if re.search(rf"(^|[^A-Za-z0-9_]){re.escape(module)}([^A-Za-z0-9_]|$)", targets):
                return True
        elif module in targets:
            return True
        return module in self.modules_to_save or _has_module(module_names(self.weight_names), module)


@dataclass(frozen=True)
class CheckpointFacts:
    """What a checkpoint is, read from its files (see module docstring)."""

    name: str
    """As the user gave it."""
    path: Path
    """The folder given (the adapter folder for adapters)."""
    model_path: Path
    """The folder holding ``config.json`` and the full weights (the base for adapters)."""
    config: Mapping[str, Any]
    weight_names: frozenset[str]
    adapter: AdapterFacts | None = None
    revision: str | None = None
    hub_repo: str | None = None
    """Repo id when :attr:`path` is a Hub snapshot."""
    base_hub_repo: str | None = None
    """Repo id when :attr:`model_path` is a Hub snapshot of an adapter's base."""

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self.config.get("architectures") or ())

    def has_module(self, module: str) -> bool:
        """Whether a module of that name has weights in the model or the adapter."""
        return _has_module(module_names(self.weight_names), module) or (
            self.adapter is not None and self.adapter.mentions(module)
        )

    def describe(self) -> str:
        text = f"model_type={self.model_type or None!r}, architectures={list(self.architectures)}"
        if self.adapter is not None:
            text += (
                f", PEFT {self.adapter.peft_type or '?'} adapter over {self.adapter.base_name!r} "
                f"(targets {self.adapter.target_modules!r}, modules_to_save {list(self.adapter.modules_to_save)})"
            )
        return text

    def fetch_weights(self) -> CheckpointFacts:
        """Make sure the weights are on disk (downloads Hub snapshots; no-op for folders)."""
        facts = self
        if self.hub_repo is not None:
            facts = replace(facts, path=_snapshot(self.hub_repo, self.revision, _WEIGHT_PATTERNS))
            if self.adapter is None:
                facts = replace(facts, model_path=facts.path)
        if self.base_hub_repo is not None:
            base_revision = self.adapter.config.get("revision") if self.adapter else None
            facts = replace(facts, model_path=_snapshot(self.base_hub_repo, base_revision, _WEIGHT_PATTERNS))
        if not safetensors_files(facts.model_path):
            found = sorted(p.name for p in facts.model_path.iterdir())
            raise CheckpointFormatError(
                f"no *.safetensors weights in {facts.model_path} (found: {', '.join(found) or 'nothing'}). "
                "mmembed only loads safetensors (never pickled .bin files); convert the checkpoint with "
                "transformers' save_pretrained(..., safe_serialization=True)."
            )
        return facts


def _resolve_base(
    adapter: AdapterFacts, base_model: str | os.PathLike[str] | None
) -> tuple[Path, str | None]:
    """The base folder of an adapter: ``base_model`` if given, else ``base_model_name_or_path``
    as a folder (absolute, relative to the working directory or to the adapter) or a Hub id."""
    given = str(base_model) if base_model is not None else adapter.base_name
    if not given:
        raise CheckpointFormatError(
            f"{adapter.path / ADAPTER_CONFIG} has no base_model_name_or_path; pass base_model=<base folder>"
        )
    candidates = [Path(given).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(adapter.path / given)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve(), None
    fix = f"pass base_model=<folder of the base model> (or set base_model_name_or_path in {ADAPTER_CONFIG})"
    if _looks_like_path(given):
        raise CheckpointNotFoundError(
            f"the adapter at {adapter.path} is applied on top of base model {given!r}, a folder that does "
            f"not exist here; {fix}."
        )
    try:
        return _snapshot(given, adapter.config.get("revision"), _METADATA_PATTERNS), given
    except CheckpointNotFoundError as err:
        raise CheckpointNotFoundError(
            f"the adapter at {adapter.path} is applied on top of base model {given!r}, which is neither a "
            f"local folder nor reachable on the Hugging Face Hub. Download the base with "
            f"{_download_hint(given)} and {fix}."
        ) from err


def inspect_checkpoint(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    *,
    base_model: str | os.PathLike[str] | None = None,
) -> CheckpointFacts:
    """Read a checkpoint's configs and weight names (no weights are loaded or, for Hub
    checkpoints, downloaded beyond the small metadata and adapter files)."""
    path, hub_repo = locate(name_or_path, revision)
    adapter: AdapterFacts | None = None
    base_hub_repo: str | None = None
    model_path = path
    if (path / ADAPTER_CONFIG).is_file():
        adapter_weights = path / ADAPTER_WEIGHTS
        adapter = AdapterFacts(
            path=path,
            config=_read_json(path / ADAPTER_CONFIG),
            weight_names=frozenset(
                _safetensors_names([adapter_weights]) if adapter_weights.is_file() else ()
            ),
        )
        model_path, base_hub_repo = _resolve_base(adapter, base_model)
    elif base_model is not None:
        raise MMEmbedError(f"base_model was given but {path} is not a PEFT adapter (no {ADAPTER_CONFIG})")
    if not (model_path / MODEL_CONFIG).is_file():
        found = sorted(p.name for p in model_path.iterdir())
        raise CheckpointFormatError(
            f"{model_path} has neither {MODEL_CONFIG} nor {ADAPTER_CONFIG} (found: {', '.join(found) or 'nothing'}); "
            "pass the folder of a transformers checkpoint or of a PEFT adapter."
        )
    return CheckpointFacts(
        name=str(name_or_path),
        path=path,
        model_path=model_path,
        config=_read_json(model_path / MODEL_CONFIG),
        weight_names=weight_names(model_path),
        adapter=adapter,
        revision=revision,
        hub_repo=hub_repo,
        base_hub_repo=base_hub_repo,
    )
