"""``mmembed.train``: fine-tune the index's own model on (query, page) pairs.

Long because ``_train`` is the one ordered run (check, hold out, mine, evaluate, train, reload,
evaluate) whose steps each read the state the previous ones left, kept in order in one place;
the steps themselves live in the sibling modules (pairs, heldout, mining, trainer, output).

>>> result = mmembed.train("my_index", "pairs.jsonl", "my-adapter", max_steps=200)  # doctest: +SKIP
>>> print(result.table())                                                           # doctest: +SKIP
>>> encoder = mmembed.load_encoder("my-adapter")                                    # doctest: +SKIP

Steps: read and check the pairs against the index (or sample pseudo-queries from the pages'
stored text, :mod:`~mmembed.finetune.pseudo`); hold out a share of the pages; mine
hard negatives from the index with the model it was built with (positive-aware, saved);
evaluate the untrained model on the held-out split; train LoRA (transformers ``Trainer``,
checkpoints under ``<out>/checkpoints``; re-running the same command resumes the last one;
out of memory halves the batch, :mod:`~mmembed.finetune.memory`);
write the adapter folder, load it back with :func:`mmembed.load_encoder` and evaluate it.
Nothing is written to ``out`` before the first checkpoint, and a bad input fails before any.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..encoders.base import Encoder
from ..encoders.nomic import NomicEncoder
from ..evaluate import EvalReport, format_table
from ..index.protocol import IndexBackend
from ..types import MMEmbedError, PageRecord
from . import nomic, output
from .families import REFUSED, TrainableEncoder, UntrainableFamilyError, refusal, refused_family
from .heldout import evaluate_held_out
from .memory import BatchPlan, is_out_of_memory, smallest_batch, train_with_halving
from .mining import MinedQuery, mine_hard_negatives, write_mined
from .nomic import NomicTrainable
from .pages import PageImages
from .pairs import MIN_PAIRS, PairsError, PairSplit, TrainPair, positives_by_query, read_pairs, split_pairs
from .pseudo import PseudoQuerySummary, page_texts, sample_pseudo_queries
from .sampling import SourceBatchSampler, missing_metadata_key, source_key_error, source_of
from .settings import TrainSettings
from .trainer import Example, LoraSettings, PairCollator, build_trainer, wrap_with_lora

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"


class TrainError(MMEmbedError):
    """A training run that cannot start or continue (the message says what to change)."""


class TrainUsageError(TrainError):
    """Arguments no run could take (``pseudo_queries=0``, pairs and pseudo-queries together,
    pseudo-queries from an index without text); raised before the model is opened. The CLI
    reports it as a usage error (exit code 2)."""


@dataclass
class TrainResult:
    """What :func:`train` did and where it wrote it."""

    out: Path
    merged: Path | None
    family: str
    steps: int
    train_pairs: int
    held_out_pairs: int
    negatives: int
    resumed_from: str | None
    before: EvalReport | None
    after: EvalReport | None
    settings: TrainSettings
    losses: list[float] = field(default_factory=list)
    """The loss of each step this call ran (a resumed run: the steps after the checkpoint)."""
    index_arguments: list[str] = field(default_factory=list)
    """``mmembed index`` arguments that load the trained model (``--model <out>``; Nomic v1.5:
    the vision checkpoint with ``--option text_model=<out>``)."""
    trained: TrainedModel | None = field(default=None, repr=False)
    """The in-memory trained model (its embeddings are what the saved adapter reproduces)."""
    pseudo_queries: PseudoQuerySummary | None = None
    """What ``pseudo_queries=N`` sampled (and skipped), or ``None`` for a pairs file."""
    batch_size: int = 0
    """The batch size the run finished with (smaller than asked after out-of-memory)."""
    gradient_accumulation_steps: int = 0
    memory_retries: list[str] = field(default_factory=list)
    """One line per out-of-memory retry (batch halved, accumulation doubled)."""

    def table(self) -> str:
        """Held-out metrics before and after, side by side (``mmembed eval``'s table)."""
        if self.before is None or self.after is None:
            return ""
        return format_table([self.before, self.after])


class TrainedModel:
    """Embeddings of the model as trained (LoRA unmerged, dropout off), for checking what a
    saved adapter reloads into."""

    def __init__(self, trainable: TrainableEncoder, model: Any) -> None:
        self.trainable = trainable
        self.model = model

    @torch.no_grad()
    def _run(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        self.model.eval()
        out = self.trainable.embed(self.model, inputs)
        if out.ndim == 2:  # (B, D)
            return [row[None].float().cpu() for row in out]
        keep = inputs["attention_mask"].bool()  # (B, T)
        return [e[k].float().cpu() for e, k in zip(out, keep, strict=True)]

    def encode_queries(self, queries: list[str]) -> list[torch.Tensor]:
        return self._run(self.trainable.query_inputs(queries))

    def encode_images(self, images: list[Any]) -> list[torch.Tensor]:
        return self._run(self.trainable.page_inputs(images))


def train(
    index: str | os.PathLike[str] | IndexBackend,
    pairs: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    settings: TrainSettings | None = None,
    save_steps: int = 100,
    merge: bool = False,
    device: str | None = None,
    progress: bool = False,
    keep_checkpoints: bool = False,
    eval_pairs: str | os.PathLike[str] | None = None,
    pseudo_queries: int | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune the model of ``index`` on ``pairs`` and write a LoRA adapter folder to ``out``
    (see module docstring). ``options`` are :class:`TrainSettings` fields (``negatives=4``,
    ``max_steps=200``, ...), an alternative to passing ``settings``. ``eval_pairs``: a pairs
    file for the before / after evaluation instead of holding out ``eval_fraction`` of the
    pages (its pages must not be in ``pairs``). ``pseudo_queries=N`` (with ``pairs=None``):
    no labels, up to ``N`` queries sampled from each page's stored text instead
    (:mod:`mmembed.finetune.pseudo`; weaker than real queries).

    >>> mmembed.train("my_index", None, "my-adapter", pseudo_queries=3)  # doctest: +SKIP
    """
    settings = _settings(settings, options)
    _check_data_arguments(pairs, pseudo_queries)
    bad_key = source_key_error(settings.source_key)
    if bad_key is not None:
        raise TrainUsageError(bad_key)
    try:
        import accelerate  # noqa: F401 - transformers' Trainer needs it
    except ImportError as err:
        raise TrainError(
            "training runs on transformers' Trainer, which needs accelerate: pip install 'mmembed-core[train]'"
        ) from err
    out = Path(out).expanduser().absolute()
    out_existed = out.exists()
    opened = None
    if not isinstance(index, IndexBackend):
        from ..index import open_index

        opened = index = open_index(index, create=False, readonly=True)
    try:
        return _train(
            index,
            Path(pairs) if pairs is not None else None,
            out,
            settings,
            save_steps=save_steps,
            merge=merge,
            device=device,
            progress=progress,
            keep_checkpoints=keep_checkpoints,
            eval_pairs=Path(eval_pairs) if eval_pairs is not None else None,
            pseudo_queries=pseudo_queries,
        )
    except BaseException as err:
        # Nothing left in ``out`` unless the run checkpointed (then the same command resumes)
        # or finished training (its adapter is there).
        if (
            not out_existed
            and out.is_dir()
            and not (out / output.ADAPTER_CONFIG).is_file()
            and _last_complete_checkpoint(out / output.CHECKPOINTS) is None
        ):
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(err, Exception) and not isinstance(err, MMEmbedError) and is_out_of_memory(err):
            raise TrainError(  # outside the training loop: mining or evaluation
                f"out of memory outside the training loop (mining hard negatives or evaluating): lower --dpi "
                f"(now {settings.dpi:g}) or --negatives (now {settings.negatives}), or use a device with more "
                "memory. Checkpoints already saved are kept; the same command resumes."
            ) from err
        raise
    finally:
        if opened is not None:
            opened.close()


def trainable_for(encoder: Encoder) -> TrainableEncoder:
    """The family's :class:`TrainableEncoder` (Nomic v1.5's pair has its own, see
    :mod:`mmembed.finetune.nomic`); raises :class:`UntrainableFamilyError` with why."""
    if isinstance(encoder, NomicEncoder) and encoder.info.family not in REFUSED:
        return NomicTrainable(encoder)
    return TrainableEncoder(encoder)


def _check_data_arguments(pairs: object, pseudo_queries: object) -> None:
    """Exactly one source of training queries, and a positive count of pseudo-queries."""
    if pseudo_queries is None:
        if pairs is None:
            raise TrainUsageError("give training pairs (--pairs FILE) or --pseudo-queries N (no labels)")
        return
    if pairs is not None:
        raise TrainUsageError(
            "--pairs and --pseudo-queries do not go together: pseudo-queries are for an index without "
            "labelled pairs; give one of them"
        )
    if isinstance(pseudo_queries, bool) or not isinstance(pseudo_queries, int) or pseudo_queries < 1:
        raise TrainUsageError(
            f"--pseudo-queries must be a whole number of queries per page >= 1, got {pseudo_queries!r}"
        )


def _pseudo_pairs(
    index: IndexBackend, records: list[PageRecord], per_page: int, seed: int, index_path: str
) -> tuple[list[TrainPair], PseudoQuerySummary]:
    """Pseudo-query pairs from the index's stored page text (before any model is opened)."""
    texts = page_texts(index, records)
    if texts is None:
        raise TrainUsageError(
            f"--pseudo-queries samples queries from the pages' stored text, and the index at {index_path} "
            f"({type(index).__name__}) stores none; give --pairs, or train on an embedded index folder"
        )
    pairs, summary = sample_pseudo_queries(texts, per_page, seed=seed)
    if summary.pages_with_queries == 0:
        why = (
            "stores no page text"
            if summary.pages_with_too_little_text == 0
            else f"has no page with enough text ({summary.pages_with_too_little_text} page(s) too short)"
        )
        raise TrainUsageError(
            f"--pseudo-queries: the index at {index_path} {why} ({summary.pages_without_text} of {len(records)} "
            "page(s) without text: scans and images have no text layer, and indexes built before text was "
            f"stored need `mmembed index --backfill-text --index {index_path}`). Give labelled --pairs instead."
        )
    if len(pairs) < MIN_PAIRS:
        raise PairsError(
            f"--pseudo-queries: only {len(pairs)} query could be sampled from the index's text; "
            f"training needs at least {MIN_PAIRS}. Give labelled --pairs instead."
        )
    logger.info("%s", summary.line())
    return pairs, summary


def _settings(settings: TrainSettings | None, options: dict[str, Any]) -> TrainSettings:
    known = set(TrainSettings.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrainError(
            f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    base = asdict(settings) if settings is not None else {}
    return TrainSettings(**{**base, **options})


def _load_private_encoder(index: IndexBackend, device: str | None) -> Encoder:
    """The index's model, loaded for this run only (never the shared cached encoder: training
    changes its module), with the family options the index recorded (as search loads it)."""
    from ..encoders.cache import _load
    from ..encoders.registry import recorded_options
    from ..encoders.runtime import resolve_device, resolve_dtype

    info = index.encoder
    refuse_remote_code(info.name, info.family)
    resolved = resolve_device(device)
    dtype = torch.float32 if resolved.type == "cpu" else resolve_dtype(None, resolved)
    encoder = _load(info.name, info.revision, None, resolved, dtype, recorded_options(info))
    index.encoder.check_compatible(encoder.info, index_path=str(getattr(index, "path", "")))
    return encoder


def refuse_remote_code(name: str, family: str) -> None:
    """Checkpoints that run their own code are refused before anything is read or loaded."""
    from ..encoders import remote_code

    if family == remote_code.FAMILY_ID:
        raise refused_family(name, family)


def _digest(pairs: Sequence[TrainPair]) -> str:
    text = "\n".join(f"{p.query}\t{p.page_id}" for p in pairs)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The newest ``checkpoint-N`` the Trainer finished writing (its ``trainer_state.json`` is
    there): a run killed while saving leaves a partial folder, which resuming must pass over."""
    if not checkpoints.is_dir():
        return None
    steps = [
        (int(d.name.removeprefix("checkpoint-")), d)
        for d in checkpoints.iterdir()
        if d.is_dir() and d.name.startswith("checkpoint-") and d.name.removeprefix("checkpoint-").isdigit()
    ]
    for _, folder in sorted(steps, reverse=True):
        if (folder / "trainer_state.json").is_file():
            return folder
    return None


def _check_out(out: Path, run: dict[str, Any]) -> str | None:
    """The checkpoint to resume from, if ``out`` holds an unfinished run of the same
    settings; raises when ``out`` holds anything else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise TrainError(f"--out {out} is a file; give a folder for the adapter")
    if (out / output.ADAPTER_CONFIG).is_file():
        raise TrainError(f"{out} already holds a trained adapter; give a new --out folder (or delete it)")
    last = _last_complete_checkpoint(out / output.CHECKPOINTS)
    if last is None:
        if any(out.iterdir()):
            raise TrainError(f"{out} is not empty and holds no unfinished run; give a new --out folder")
        return None
    saved = json.loads((out / RUN_FILE).read_text(encoding="utf-8")) if (out / RUN_FILE).is_file() else {}
    if saved.get("run") != run:
        changed = sorted(k for k in run if saved.get("run", {}).get(k) != run[k])
        raise TrainError(
            f"{out} holds an unfinished run with other settings ({', '.join(changed) or 'unreadable run.json'} "
            "differ); re-run with the same index, pairs and options to resume it, or give a new --out folder"
        )
    return str(last)


def _train(
    index: IndexBackend,
    pairs_path: Path | None,
    out: Path,
    settings: TrainSettings,
    *,
    save_steps: int,
    merge: bool,
    device: str | None,
    progress: bool,
    keep_checkpoints: bool,
    eval_pairs: Path | None,
    pseudo_queries: int | None = None,
) -> TrainResult:
    from transformers import TrainerCallback, TrainingArguments

    index_path = str(getattr(index, "path", index.encoder.name))
    refuse_remote_code(index.encoder.name, index.encoder.family)
    if index.encoder.family in REFUSED:  # refused before the model is even loaded
        raise refused_family(index.encoder.name, index.encoder.family)
    nomic.check_index(index.encoder)  # Nomic's text checkpoint alone indexes no pages
    all_records = list(index.records())
    records: dict[str, PageRecord] = {r.id: r for r in all_records}
    pseudo: PseudoQuerySummary | None = None
    if pairs_path is None:
        assert pseudo_queries is not None  # checked by train()
        pairs, pseudo = _pseudo_pairs(index, all_records, pseudo_queries, settings.seed, index_path)
        pairs_name = f"pseudo-queries:{pseudo_queries}"
    else:
        pairs = read_pairs(pairs_path, all_records, index_path=index_path)
        pairs_name = str(pairs_path.absolute())
    if eval_pairs is not None:
        held_out = read_pairs(eval_pairs, all_records, index_path=index_path)
        if pseudo is not None:  # real held-out pairs: their pages get no pseudo-queries
            held_pages = {p.page_id for p in held_out}
            pairs = [p for p in pairs if p.page_id not in held_pages]
            pseudo = dataclasses.replace(
                pseudo, queries=len(pairs), pages_with_queries=len({p.page_id for p in pairs})
            )
            if len(pairs) < MIN_PAIRS:
                raise PairsError(
                    f"--pseudo-queries leaves {len(pairs)} training pair(s) once the pages of {eval_pairs} are "
                    "held out; index more pages with text"
                )
        shared = sorted({p.page_id for p in held_out} & {p.page_id for p in pairs})
        if shared:
            raise PairsError(
                f"{eval_pairs} names {len(shared)} page(s) the training pairs also name (e.g. {shared[0]}); "
                "held-out pages must be pages training never sees"
            )
        split = PairSplit(list(pairs), held_out)
    else:
        split = split_pairs(pairs, settings.eval_fraction, seed=settings.seed)
    known = positives_by_query([*pairs, *split.held_out])
    source_of_page = {pid: source_of(records[pid], settings.source_key) for pid in records}
    no_key = missing_metadata_key(settings.source_key, [records[p.page_id] for p in split.train])
    if no_key is not None and settings.sampling == "same-source":
        raise TrainError(no_key)
    run = {
        "index": index_path,
        "model": index.encoder.name,
        "pairs": pairs_name,
        "pairs_digest": _digest(pairs),
        "eval_pairs_digest": _digest(split.held_out),
        "settings": asdict(settings),
    }
    resume_from = _check_out(out, run)

    encoder = _load_private_encoder(index, device)
    try:
        trainable = trainable_for(encoder)
    except UntrainableFamilyError:
        raise
    except MMEmbedError as err:  # pragma: no cover - TrainableEncoder raises only the above
        raise refusal(encoder) from err
    images = PageImages(records, dpi=settings.dpi)
    for page in sorted({p.page_id for p in pairs}):
        images.check(page)

    # Mining and the "before" evaluation: once per run (a resumed run reads them back).
    if resume_from is not None:
        mined = [MinedQuery(**_mined_row(row)) for row in _read_jsonl(out / output.NEGATIVES_FILE)]
        before = _report(json.loads((out / RUN_FILE).read_text(encoding="utf-8")).get("before"))
    else:
        mined = mine_hard_negatives(
            index,
            encoder,
            split.train,
            known,
            k=settings.negatives,
            max_ratio=settings.max_neg_ratio,
            exclude_pages=sorted({p.page_id for p in split.held_out}),
        )
        before = (
            evaluate_held_out(encoder, split.held_out, records, images, name="before")
            if split.held_out
            else None
        )
    for page in sorted({n.id for row in mined for n in row.negatives}):
        images.check(page)
    examples = [Example(row.query, row.positive, tuple(n.id for n in row.negatives)) for row in mined]
    saved_run = json.loads((out / RUN_FILE).read_text(encoding="utf-8")) if resume_from else {}
    plan = BatchPlan(settings.batch_size, settings.gradient_accumulation_steps)
    if "batch" in saved_run:  # an earlier attempt of this run halved the batch on out of memory
        plan = BatchPlan(**saved_run["batch"])

    def sampler_for(batch_size: int) -> SourceBatchSampler:
        return SourceBatchSampler(
            [source_of_page[e.positive] for e in examples],
            [e.positive for e in examples],
            batch_size,
            sampling=settings.sampling,
            seed=settings.seed,
            single=batch_size < 2,
        )

    if len(sampler_for(plan.batch_size)) == 0:
        raise TrainError(
            f"{len(examples)} training pair(s) make no batch of 2 different pages; give more pairs"
        )

    model = wrap_with_lora(
        trainable,
        LoraSettings(settings.lora_r, settings.lora_alpha, settings.lora_dropout),
        seed=settings.seed,
    )
    untrained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if settings.gradient_checkpointing:
        backbone = trainable.checkpointed_backbone()
        if backbone is not None and hasattr(backbone, "gradient_checkpointing_enable"):
            backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    collator = PairCollator(trainable, examples, images, known)

    summary_data = {
        "pairs": str(pairs_path) if pairs_path is not None else pairs_name,
        "pseudo_queries": pseudo.to_json() if pseudo is not None else None,
        "train_pairs": len(split.train),
        "train_pages": len({p.page_id for p in split.train}),
        "sources": len({source_of_page[p.page_id] for p in split.train}),
        "held_out_pairs": len(split.held_out),
        "held_out_pages": len({p.page_id for p in split.held_out}),
        "negatives": sum(len(row.negatives) for row in mined),
        "too_close": sum(len(row.too_close) for row in mined),
    }
    in_use = [plan]

    class SaveRunState(TrainerCallback):  # type: ignore[misc]
        """With each checkpoint, ``out`` gets what a resumed run needs to read back."""

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not (out / output.NEGATIVES_FILE).is_file():
                write_mined(out / output.NEGATIVES_FILE, mined)
            output.write_json(
                out / RUN_FILE,
                {"run": run, "before": before.to_json() if before else None, "batch": asdict(in_use[0])},
            )

    on_cpu = encoder.device.type == "cpu"

    def attempt(plan: BatchPlan, resume: str | None) -> Any:
        in_use[0] = plan
        args = TrainingArguments(
            output_dir=str(out / output.CHECKPOINTS),
            per_device_train_batch_size=plan.batch_size,
            gradient_accumulation_steps=plan.accumulation,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps if settings.max_steps is not None else -1,
            learning_rate=settings.learning_rate,
            warmup_steps=settings.warmup_steps,
            lr_scheduler_type="linear",
            logging_steps=max(1, min(10, save_steps)),
            save_strategy="steps",
            save_steps=save_steps,
            save_total_limit=2,
            seed=settings.seed,
            data_seed=settings.seed,
            report_to="none",
            remove_unused_columns=False,
            label_names=[],
            dataloader_num_workers=0,
            disable_tqdm=not progress,
            use_cpu=on_cpu,
            bf16=not on_cpu and encoder.dtype == torch.bfloat16,
        )
        trainer = build_trainer(
            trainable=trainable,
            model=model,
            examples=examples,
            sampler=sampler_for(plan.batch_size),
            collator=collator,
            args=args,
            temperature=settings.temperature,
            callbacks=[SaveRunState()],
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    def restart() -> str | None:
        """The untrained LoRA weights back (a checkpoint, if any, then loads over them)."""
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in untrained:
                    parameter.copy_(untrained[name])
                    parameter.grad = None
        last = _last_complete_checkpoint(out / output.CHECKPOINTS)
        return str(last) if last is not None else None

    def give_up(plan: BatchPlan, err: BaseException) -> TrainError:
        return TrainError(
            f"out of memory even at {plan.describe()} (asked for batch size {settings.batch_size}; the batch "
            f"halves on out of memory down to {plan.batch_size}): lower --negatives (now {settings.negatives}) "
            f"or --dpi (now {settings.dpi:g}: pages are rendered at this resolution), add "
            "--gradient-checkpointing, or use a device with more memory. Checkpoints already saved are kept; "
            f"the same command resumes. ({type(err).__name__}: {str(err)[:200]})"
        )

    trainer, plan, memory_retries = train_with_halving(
        attempt,
        plan,
        floor=smallest_batch(settings.negatives),
        resume_from=resume_from,
        restart=restart,
        give_up=give_up,
    )
    steps = int(trainer.state.global_step)
    model.eval()

    # The finished folder: files are staged, then moved in, so a crash here leaves no
    # half-written adapter beside the checkpoints.
    out.mkdir(parents=True, exist_ok=True)
    staging = out / ".finishing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    base, revision = trainable.base_checkpoint()  # Nomic: the text tower's checkpoint
    facts = _facts(base, revision)
    if facts.adapter is not None:  # LoRA over LoRA: the new adapter's base is the merged start
        trainable.write_untrained_base(model, facts, staging / output.BASE)
        base = str(out / output.BASE)  # where it is once moved in
    output.write_adapter(model, staging, base=base)
    trainable.copy_processor_files(facts, staging)
    write_mined(staging / output.NEGATIVES_FILE, mined)
    for file in sorted(staging.iterdir()):
        if file.is_dir():
            shutil.rmtree(out / file.name, ignore_errors=True)
        os.replace(file, out / file.name)
    staging.rmdir()

    trained = TrainedModel(trainable, model)
    after = None
    if split.held_out:
        # Not through the shared cache: the adapter's fingerprint covers the folder's .json
        # files, and training.json is written below; a cached encoder fingerprinted now would
        # not match the index built later with the finished folder (EncoderMismatchError).
        reloaded = trainable.reload(out, device=encoder.device, dtype=encoder.dtype)
        after = evaluate_held_out(reloaded, split.held_out, records, images, name="after")

    merged_path = None
    summary = {
        "base_model": encoder.info.name,
        "family": encoder.info.family,
        "kind": encoder.info.kind,
        "index": index_path,
        "steps": steps,
        "data": summary_data,
        "hyperparameters": {
            **asdict(settings),
            "lora_target_modules": trainable.lora_target_regex(),
            "loss": "InfoNCE over in-batch positives + shared hard negatives"
            + (" (MaxSim, scores / query length)" if trainable.kind == "multi" else " (dot product)"),
        },
        "before": before.to_json() if before else None,
        "after": after.to_json() if after else None,
        "batch": {**asdict(plan), "out_of_memory_retries": memory_retries},
    }
    table = format_table([before, after]) if before and after else ""
    output.write_json(out / output.TRAINING_JSON, summary)
    (out / output.CARD).write_text(output.model_card(summary, table), encoding="utf-8")
    if merge:
        merged_path = trainable.write_merged(output.merged_module(model), facts, out / output.MERGED)
        trained = TrainedModel(trainable, trainable.module)
    (out / RUN_FILE).unlink(missing_ok=True)
    if not keep_checkpoints:
        shutil.rmtree(out / output.CHECKPOINTS, ignore_errors=True)
    return TrainResult(
        out=out,
        merged=merged_path,
        family=encoder.info.family,
        steps=steps,
        train_pairs=len(split.train),
        held_out_pairs=len(split.held_out),
        negatives=sum(len(row.negatives) for row in mined),
        resumed_from=resume_from,
        before=before,
        after=after,
        settings=settings,
        losses=list(trainer.step_losses),
        trained=trained,
        pseudo_queries=pseudo,
        batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.accumulation,
        memory_retries=memory_retries,
        index_arguments=trainable.index_arguments(out),
    )


def _facts(name: str, revision: str | None) -> Any:
    from ..encoders.checkpoint import inspect_checkpoint

    return inspect_checkpoint(name, revision)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _mined_row(row: dict[str, Any]) -> dict[str, Any]:
    from .mining import MinedNegative

    return {
        **row,
        "negatives": [MinedNegative(**n) for n in row["negatives"]],
        "too_close": [MinedNegative(**n) for n in row["too_close"]],
    }


def _report(data: dict[str, Any] | None) -> EvalReport | None:
    if not data:
        return None
    return EvalReport(
        name=data["name"],
        metrics=data["metrics"],
        queries=data["queries"],
        unjudged_queries=data.get("unjudged_queries", []),
    )
