"""``mmembed train``: fine-tune the index's own model on (query, page) pairs (LoRA); see
:mod:`mmembed.finetune`."""

from __future__ import annotations

import argparse
import sys

from .arguments import Subparsers
from .errors import UsageError
from .output import safe, safe_lines


def add_parser(sub: Subparsers) -> None:
    from ..finetune.settings import TrainSettings

    d = TrainSettings()
    p = sub.add_parser(
        "train",
        help="fine-tune the index's model on your pairs (LoRA adapter)",
        description="Fine-tune the model an index was built with on (query, page) pairs: hard negatives "
        "mined from the index, same-source batches, LoRA on the language model. Writes a PEFT adapter "
        "folder that --model / load_encoder take; re-index with it into a new folder. Re-running the "
        "same command resumes an interrupted run from its last checkpoint.",
    )
    p.add_argument("--index", required=True, help="the index whose model and pages to train on")
    p.add_argument(
        "--pairs",
        help="JSONL {query, source, page} / {query, id}, or a BEIR folder (queries.jsonl + qrels/)",
    )
    p.add_argument(
        "--pseudo-queries",
        type=int,
        metavar="N",
        help="no labels: up to N queries per page sampled from the pages' stored text (sentences, key "
        "phrases; weaker than real queries). Instead of --pairs",
    )
    p.add_argument("--out", required=True, help="new folder for the adapter (and checkpoints while running)")
    p.add_argument(
        "--eval-pairs", help="held-out pairs for the before / after evaluation (else --eval-fraction)"
    )
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=d.eval_fraction,
        help=f"share of the pages held out for evaluation (default {d.eval_fraction})",
    )
    p.add_argument(
        "--negatives", type=int, default=d.negatives, help=f"hard negatives per pair (default {d.negatives})"
    )
    p.add_argument(
        "--max-neg-ratio",
        type=float,
        default=d.max_neg_ratio,
        help="a mined page scoring at least this share of the positive's score is left out as a likely "
        f"false negative (default {d.max_neg_ratio})",
    )
    p.add_argument(
        "--sampling",
        choices=["same-source", "shuffle"],
        default=d.sampling,
        help="batches from one source at a time (default) or shuffled",
    )
    p.add_argument(
        "--source-key",
        default=d.source_key,
        help="what a source is: file (default), folder, or metadata:<key>",
    )
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"pairs per batch (default {d.batch_size})"
    )
    p.add_argument(
        "--epochs", type=float, default=d.epochs, help=f"passes over the pairs (default {d.epochs:g})"
    )
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    p.add_argument(
        "--lr", type=float, default=d.learning_rate, help=f"learning rate (default {d.learning_rate:g})"
    )
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument(
        "--temperature",
        type=float,
        default=d.temperature,
        help=f"InfoNCE temperature (default {d.temperature})",
    )
    p.add_argument("--lora-r", type=int, default=d.lora_r, help=f"LoRA rank (default {d.lora_r})")
    p.add_argument(
        "--lora-alpha", type=int, default=d.lora_alpha, help=f"LoRA alpha (default {d.lora_alpha})"
    )
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
    p.add_argument(
        "--grad-accum", type=int, default=d.gradient_accumulation_steps, help="gradient accumulation steps"
    )
    p.add_argument("--gradient-checkpointing", action="store_true", help="trade compute for memory")
    p.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps (default 100)")
    p.add_argument("--dpi", type=float, default=d.dpi, help=f"page render resolution (default {d.dpi:g})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--merge", action="store_true", help="also write a merged full checkpoint to <out>/merged")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep <out>/checkpoints when finished")
    p.add_argument("--device", help="cuda, mps, cpu (default: the best available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..finetune import TrainSettings, TrainUsageError, train

    if args.pairs is None and args.pseudo_queries is None:
        raise UsageError("give --pairs FILE (labelled pairs) or --pseudo-queries N (no labels)")
    if args.pairs is not None and args.pseudo_queries is not None:
        raise UsageError("--pairs and --pseudo-queries do not go together; give one of them")
    if args.pseudo_queries is not None and args.pseudo_queries < 1:
        raise UsageError(f"--pseudo-queries must be at least 1 (queries per page), got {args.pseudo_queries}")

    settings = TrainSettings(
        negatives=args.negatives,
        max_neg_ratio=args.max_neg_ratio,
        sampling=args.sampling,
        source_key=args.source_key,
        batch_size=args.batch_size,
        epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        temperature=args.temperature,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        gradient_accumulation_steps=args.grad_accum,
        gradient_checkpointing=args.gradient_checkpointing,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        dpi=args.dpi,
    )
    try:
        result = train(
            args.index,
            args.pairs,
            args.out,
            settings=settings,
            save_steps=args.save_steps,
            merge=args.merge,
            device=args.device,
            progress=not args.quiet,
            keep_checkpoints=args.keep_checkpoints,
            eval_pairs=args.eval_pairs,
            pseudo_queries=args.pseudo_queries,
        )
    except TrainUsageError as err:  # e.g. --pseudo-queries on an index without text: exit 2
        raise UsageError(str(err)) from err
    if result.pseudo_queries is not None:
        print(safe(result.pseudo_queries.line()), file=sys.stderr)
    for line in result.memory_retries:
        print(safe(line), file=sys.stderr)
    resumed = f" (resumed from {safe(result.resumed_from)})" if result.resumed_from else ""
    print(
        f"trained {result.family} for {result.steps} step(s){resumed} on {result.train_pairs} pair(s), "
        f"{result.negatives} hard negative(s); adapter in {safe(str(result.out))}",
        file=sys.stderr,
    )
    if result.merged is not None:
        print(f"merged checkpoint in {safe(str(result.merged))}", file=sys.stderr)
    table = result.table()
    if table:
        print(safe_lines(table))
    print(
        f"next: index your pages again with the new model into a NEW folder, e.g. `mmembed index <files> "
        f"--index <new-index> {safe(' '.join(result.index_arguments))}` (the old index keeps the old model's "
        "vectors)",
        file=sys.stderr,
    )
    return 0
