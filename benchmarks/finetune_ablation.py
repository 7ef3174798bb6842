"""Ablation of the fine-tuning recipe: hard negatives + same-source batches vs in-batch
negatives only (shuffled batches), on the same budget of optimizer steps.

The task is ``mmembed_testing.colour_pages`` (32 rendered PDF pages in 4 files, queries naming
the colour, one page per colour held out); the models are tiny random checkpoints of a
multi-vector (ColQwen2.5 layout) and a dense (BiQwen2.5) family, trained on CPU with
``mmembed.train``. Prints held-out R@1 / MRR@10 before and after each arm, and the ratio of
the recipe's R@1 gain over the in-batch-only gain. A small task on random models: the table
says whether the recipe's parts help at equal steps here, not how much they help real models.

    python benchmarks/finetune_ablation.py --steps 12 --seeds 0 1
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

ARMS: dict[str, dict[str, Any]] = {
    "hard negatives + same-source": {"negatives": 2, "sampling": "same-source"},
    "in-batch only (shuffled)": {"negatives": 0, "sampling": "shuffle"},
}
FAMILIES = {"multi-vector (colqwen2_5)": "colqwen2_5", "dense (biqwen2_5)": "biqwen2_5"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run (the budget)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="training seeds (batch order, LoRA init)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--temperature", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models run best on 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmembed-ablation-") as tmp:
        root = Path(tmp)
        pages = write_colour_pages(root / "pages")
        for family_name, family in FAMILIES.items():
            model = make_tiny_checkpoint(family, root / family / "model", seed=0)
            encoder = mmembed.load_encoder(model)
            index_path = root / family / "index"
            index = mmembed.open_index(index_path, encoder.info)
            try:
                mmembed.index_documents([pages.docs], index, encoder, dpi=DPI)
            finally:
                index.close()
            for arm, options in ARMS.items():
                before, after, mrr, negatives = [], [], [], []
                for seed in args.seeds:
                    result = mmembed.train(
                        index_path,
                        pages.pairs,
                        root / family / f"{arm[:4]}-{seed}",
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
                rows.append(
                    (family_name, arm, statistics.mean(before), statistics.mean(after), statistics.mean(mrr),
                     statistics.mean(negatives))
                )  # fmt: skip
    print(
        f"held-out R@1 after {args.steps} steps (batch {args.batch_size}, seeds {args.seeds}), chance 0.125"
    )
    print(f"{'model':28} {'arm':30} {'R@1 before':>10} {'R@1 after':>10} {'MRR@10':>8} {'negatives':>9}")
    for family_name, arm, r1_before, r1_after, mrr_after, mined in rows:
        print(f"{family_name:28} {arm:30} {r1_before:10.3f} {r1_after:10.3f} {mrr_after:8.3f} {mined:9.0f}")
    ratios = []
    for family_name in FAMILIES:
        recipe, baseline = (r for r in rows if r[0] == family_name)
        gain_recipe, gain_baseline = recipe[3] - recipe[2], baseline[3] - baseline[2]
        ratio = gain_recipe / gain_baseline if gain_baseline > 0 else float("inf")
        ratios.append(f"{FAMILIES[family_name]}_gain_ratio={ratio:.2f}x")
    print(f"({time.perf_counter() - started:.0f} s)")
    print(" ".join(ratios))


if __name__ == "__main__":
    main()
