"""``python -m mmembed_testing tiny FAMILY OUT_DIR [--lora] [--seed N] [--layout L]``."""

from __future__ import annotations

import argparse
import sys

from .checkpoints import make_tiny_checkpoint, tiny_families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmembed_testing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny", help="write a tiny random-initialised checkpoint")
    tiny.add_argument("family", choices=tiny_families())
    tiny.add_argument("out_dir")
    tiny.add_argument(
        "--lora", action="store_true", help="write a base folder and a PEFT LoRA adapter over it"
    )
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--layout", choices=["legacy", "transformers"], default="legacy")
    args = parser.parse_args(argv)
    path = make_tiny_checkpoint(args.family, args.out_dir, seed=args.seed, lora=args.lora, layout=args.layout)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
