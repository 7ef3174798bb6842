"""Ablation of the fine-tuning recipe: hard negatives + same-source batches vs in-batch
negatives only (shuffled batches), on the same budget of optimizer steps; ``--arms all`` adds
each part alone (hard negatives with shuffled batches, same-source batches without them).

The task is ``mmembed_testing.colour_pages`` (32 rendered PDF pages in 4 files, queries naming
the colour, one page per colour held out); the models are tiny random checkpoints of a
multi-vector (ColQwen2.5 layout) and a dense (BiQwen2.5) family, trained on CPU with
``mmembed.train``. Prints held-out R@1 / MRR@10 (mean and standard deviation over the seeds),
the per-seed R@1, and the ratio of the recipe's R@1 gain over the in-batch-only gain. A small
task on random models: the table says whether the recipe's parts help at equal steps here,
not how much they help real models.

    python benchmarks/finetune_ablation.py --steps 12 --seeds 0 1 2
    python benchmarks/finetune_ablation.py --families dense --arms all --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import mmembed
from mmembed_testing import make_tiny_checkpoint
from mmembed_testing.colour_pages import DPI, write_colour_pages

RECIPE = "hard negatives + same-source"
BASELINE = "in-batch only (shuffled)"
ARMS: dict[str, dict[str, Any]] = {
    RECIPE: {"negatives": 2, "sampling": "same-source"},
    BASELINE: {"negatives": 0, "sampling": "shuffle"},
    "hard negatives only (shuffled)": {"negatives": 2, "sampling": "shuffle"},
    "same-source only": {"negatives": 0, "sampling": "same-source"},
}
FAMILIES = {"multi": ("multi-vector (colqwen2_5)", "colqwen2_5"), "dense": ("dense (biqwen2_5)", "biqwen2_5")}


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f}±{sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (the budget)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="training seeds (batch order, LoRA init)"
    )
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=sorted(FAMILIES))
    parser.add_argument(
        "--arms", choices=["two", "all"], default="two", help="recipe vs baseline, or also each part alone"
    )
    parser.add_argument(
        "--warm-steps",
        type=int,
        default=0,
        help="first train N steps in-batch only (seed 1000) and re-index with that adapter, so that every arm "
        "starts from, and mines hard negatives with, a model better than random",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models run best on 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arms = ARMS if args.arms == "all" else {k: ARMS[k] for k in (RECIPE, BASELINE)}
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmembed-ablation-") as tmp:
        root = Path(tmp)
        pages = write_colour_pages(root / "pages")
        for key in args.families:
            family_name, family = FAMILIES[key]
            model = make_tiny_checkpoint(family, root / family / "model", seed=0)
            encoder = mmembed.load_encoder(model)
            index_path = root / family / "index"
            index = mmembed.open_index(index_path, encoder.info)
            try:
                mmembed.index_documents([pages.docs], index, encoder, dpi=DPI)
            finally:
                index.close()
            if args.warm_steps:  # the start (and the miner) is a model already trained a little
                warm = mmembed.train(
                    index_path,
                    pages.pairs,
                    root / family / "warm",
                    eval_pairs=pages.held_out,
                    max_steps=args.warm_steps,
                    batch_size=args.batch_size,
                    learning_rate=args.lr,
                    temperature=args.temperature,
                    lora_dropout=0.0,
                    dpi=DPI,
                    seed=1000,
                    negatives=0,
                    sampling="shuffle",
                )
                encoder = mmembed.load_encoder(warm.out)
                index_path = root / family / "warm-index"
                index = mmembed.open_index(index_path, encoder.info)
                try:
                    mmembed.index_documents([pages.docs], index, encoder, dpi=DPI)
                finally:
                    index.close()
            for a, (arm, options) in enumerate(arms.items()):
                before, after, mrr, negatives = [], [], [], []
                for seed in args.seeds:
                    result = mmembed.train(
                        index_path,
                        pages.pairs,
                        root / family / f"arm{a}-{seed}",
                        eval_pairs=pages.held_out,
                        max_steps=args.steps,
                        batch_size=args.batch_size,
                        learning_rate=args.lr,
                        temperature=args.temperature,
                        lora_dropout=0.0,
                        dpi=DPI,
                        seed=seed,
                        **options,
                    )
                    assert result.before is not None and result.after is not None
                    before.append(result.before.metrics["R@1"])
                    after.append(result.after.metrics["R@1"])
                    mrr.append(result.after.metrics["RR@10"])
                    negatives.append(result.negatives)
                    print(f"  {family} {arm} seed {seed}: R@1 {after[-1]:.3f}", flush=True)
                rows.append((family_name, arm, before, after, mrr, statistics.mean(negatives)))
    warmed = f", from a model warmed {args.warm_steps} steps in-batch only" if args.warm_steps else ""
    print(
        f"held-out R@1 after {args.steps} steps (batch {args.batch_size}, lr {args.lr:g}, "
        f"temperature {args.temperature:g}, seeds {args.seeds}{warmed}), chance 0.125"
    )
    print(f"{'model':26} {'arm':31} {'R@1 before':>10} {'R@1 after':>12} {'MRR@10':>12} {'negatives':>9}")
    for family_name, arm, before, after, mrr, mined in rows:
        print(
            f"{family_name:26} {arm:31} {statistics.mean(before):10.3f} {_mean_sd(after):>12} "
            f"{_mean_sd(mrr):>12} {mined:9.0f}"
        )
    for family_name, arm, _, after, _, _ in rows:
        print(f"per-seed R@1 {family_name} / {arm}: {' '.join(f'{v:.3f}' for v in after)}")
    ratios = []
    for key in args.families:
        family_name, family = FAMILIES[key]
        recipe = next(r for r in rows if r[0] == family_name and r[1] == RECIPE)
        baseline = next(r for r in rows if r[0] == family_name and r[1] == BASELINE)
        gain_recipe = statistics.mean(recipe[3]) - statistics.mean(recipe[2])
        gain_baseline = statistics.mean(baseline[3]) - statistics.mean(baseline[2])
        ratio = gain_recipe / gain_baseline if gain_baseline > 0 else float("inf")
        ratios.append(f"{family}_gain_ratio={ratio:.2f}x")
        # Same seed, same LoRA init: the per-seed difference is the fairer comparison.
        paired = [r - b for r, b in zip(recipe[3], baseline[3], strict=True)]
        wins = sum(d > 0 for d in paired)
        print(
            f"{family_name}: recipe - in-batch only, per seed: {' '.join(f'{d:+.3f}' for d in paired)} "
            f"(mean {_mean_sd(paired)}; recipe ahead on {wins} of {len(paired)} seeds)"
        )
    print(f"({time.perf_counter() - started:.0f} s)")
    print(" ".join(ratios))


if __name__ == "__main__":
    main()
