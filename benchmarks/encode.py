"""Indexing speed at real model size: pages/s and peak RSS, the model called directly vs `mmembed index`.

    python benchmarks/encode.py [--models colmodernvbert,colsmol] [--pages 4] [--batch-size 4] [--threads 2]

For each model a **full-size checkpoint with random weights** is written once (speed and memory
do not depend on the weight values, only on the architecture and the page size): its config is
the published architecture (see ``SPECS``: ColModernVBert = ModernBERT-base text model + SigLIP
base-patch16-512, pixel shuffle 4, 512-px tiles, longest edge 2048; colSmol-256M = SmolLM2-135M +
SigLIP base-patch16-512, scale factor 4, 512-px tiles, longest edge 1536), in colpali-engine's
layout. The pages are sample PDF pages rendered at 144 dpi (1224x1584, letter size).

Each measurement runs in its own subprocess (so peak RSS is that mode's alone), same threads:

- ``direct``: the reference way — colpali-engine's processor + model forward on pre-rendered
  pages, ``batch_size`` pages per call (rendering not counted);
- ``index``: ``mmembed index`` end to end on the PDF (render + encode + write), same batch size.

The ratio ``index / direct`` (pages/s) is what the issue targets (>= 0.9: the pipeline must not be
the bottleneck). A 3B Qwen2.5-VL family is not run by default: ~75 s per page and ~15 GB here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TILE = 512
SPECS: dict[str, dict[str, Any]] = {
    "colmodernvbert": {"family": "colmodernvbert", "longest_edge": 2048},
    "colsmol": {"family": "colidefics3", "longest_edge": 1536},
}


def _siglip_base_512() -> dict[str, Any]:
    return {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": TILE,
        "patch_size": 16,
    }


def write_checkpoint(name: str, folder: Path) -> Path:
    """A full-size random-weight checkpoint in colpali-engine's layout, with real-size processor
    settings and the tiny builders' tokenizer (the prompt's token count barely matters)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if name == "colmodernvbert":
        from transformers import Idefics3ImageProcessor, ModernVBertConfig, ModernVBertModel

        from mmembed_testing import tiny_modernvbert

        tokenizer: Any = tiny_modernvbert.make_tokenizer()
        config: Any = ModernVBertConfig(
            text_config={
                "model_type": "modernbert",
                "vocab_size": 50368,
                "hidden_size": 768,
                "intermediate_size": 1152,
                "num_hidden_layers": 22,
                "num_attention_heads": 12,
                "global_attn_every_n_layers": 3,
                "local_attention": 128,
                "max_position_embeddings": 8192,
                "pad_token_id": tokenizer.pad_token_id,
            },
            vision_config={"model_type": "siglip_vision_model", **_siglip_base_512()},
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            pixel_shuffle_factor=4,
        )
        config.architectures = ["ColModernVBert"]
        model: Any = ModernVBertModel(config)
        prefix, hidden = "model.", 768
    else:
        from transformers import Idefics3Config, Idefics3ImageProcessor, Idefics3Model

        from mmembed_testing import tiny_idefics3

        tokenizer = tiny_idefics3.make_smollm_tokenizer()
        config = Idefics3Config(
            vision_config=_siglip_base_512(),
            text_config={
                "model_type": "llama",
                "vocab_size": 49280,
                "hidden_size": 576,
                "intermediate_size": 1536,
                "num_hidden_layers": 30,
                "num_attention_heads": 9,
                "num_key_value_heads": 3,
                "max_position_embeddings": 8192,
                "pad_token_id": tokenizer.pad_token_id,
            },
            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
            scale_factor=4,
            tie_word_embeddings=False,
        )
        config.architectures = ["ColIdefics3"]
        model = Idefics3Model(config)
        prefix, hidden = "model.", 576
    config.save_pretrained(folder)
    weights = {f"{prefix}{k}": v.contiguous() for k, v in model.state_dict().items()}
    head = torch.nn.Linear(hidden, 128)
    head_name = "custom_text_proj" if name == "colmodernvbert" else "linear"
    weights.update({f"{head_name}.{k}": v for k, v in head.state_dict().items()})
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    Idefics3ImageProcessor(
        size={"longest_edge": SPECS[name]["longest_edge"]},
        max_image_size={"longest_edge": TILE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor_class = "ColModernVBertProcessor" if name == "colmodernvbert" else "ColIdefics3Processor"
    (folder / "processor_config.json").write_text(
        json.dumps({"image_seq_len": 64, "processor_class": processor_class}) + "\n"
    )
    return folder


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_direct(name: str, checkpoint: Path, pdf: Path, pages: int, batch_size: int) -> dict[str, float]:
    import colpali_engine.models as cm
    import pypdfium2 as pdfium
    import torch
    from transformers import Idefics3Config, ModernVBertConfig

    doc = pdfium.PdfDocument(str(pdf))
    images = [doc[i % len(doc)].render(scale=2).to_pil().convert("RGB") for i in range(pages)]  # 144 dpi
    if name == "colmodernvbert":
        model: Any = cm.ColModernVBert(ModernVBertConfig.from_pretrained(str(checkpoint)))
        processor: Any = cm.ColModernVBertProcessor.from_pretrained(str(checkpoint))
    else:
        model = cm.ColIdefics3(Idefics3Config.from_pretrained(str(checkpoint)))
        processor = cm.ColIdefics3Processor.from_pretrained(str(checkpoint))
    model.eval()  # random init: speed does not depend on the weights
    with torch.inference_mode():
        model(**processor.process_queries(["warm up"]))
        start = time.perf_counter()
        tokens = 0
        for i in range(0, pages, batch_size):
            batch = processor.process_images(images[i : i + batch_size])
            tokens += int(batch["attention_mask"].sum())
            model(**batch)
        seconds = time.perf_counter() - start
    return {"pages_per_s": pages / seconds, "seconds": seconds, "tokens_per_page": tokens / pages}


def run_index(checkpoint: Path, pdf: Path, pages: int, batch_size: int, folder: Path) -> dict[str, float]:
    import mmembed
    from mmembed.cli import main

    mmembed.load_encoder(str(checkpoint), device="cpu", dtype="float32")  # load outside the timing
    docs = folder / "docs"
    docs.mkdir()
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(str(pdf))
    out = pdfium.PdfDocument.new()
    out.import_pages(source, [i % len(source) for i in range(pages)])
    out.save(str(docs / "pages.pdf"))
    start = time.perf_counter()
    code = main(
        [
            "index", str(docs), "--index", str(folder / "idx"), "--model", str(checkpoint),
            "--device", "cpu", "--batch-size", str(batch_size), "-q",
        ]
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"mmembed index failed ({code})")
    return {"pages_per_s": pages / seconds, "seconds": seconds}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode == "direct":
            result = run_direct(args.name, args.checkpoint, args.pdf, args.pages, args.batch_size)
        else:
            result = run_index(args.checkpoint, args.pdf, args.pages, args.batch_size, Path(tmp))
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="colmodernvbert,colsmol")
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=("direct", "index"), dest="mode")
    parser.add_argument("--name")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--pdf", type=Path)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    print(
        f"pages={args.pages} batch_size={args.batch_size} threads={args.threads}, 1224x1584 pages, float32 CPU"
    )
    print(f"{'model':16} {'mode':7} {'pages/s':>8} {'s':>7} {'peak RSS MB':>12} {'tokens/page':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        pdf = sorted(write_sample_pdfs(Path(tmp) / "pdfs"))[0]
        for name in args.models.split(","):
            checkpoint = write_checkpoint(name, Path(tmp) / name)
            results = {}
            for mode in ("direct", "index"):
                command = [
                    sys.executable, __file__, "--child", mode, "--name", name, "--checkpoint", str(checkpoint),
                    "--pdf", str(pdf), "--pages", str(args.pages), "--batch-size", str(args.batch_size),
                    "--threads", str(args.threads),
                ]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{name} {mode} failed:\n{done.stderr[-3000:]}")
                results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
                r = results[mode]
                tokens = f"{r['tokens_per_page']:.0f}" if "tokens_per_page" in r else ""
                print(
                    f"{name:16} {mode:7} {r['pages_per_s']:8.3f} {r['seconds']:7.1f} {r['peak_rss_mb']:12.0f} {tokens:>12}",
                    flush=True,
                )
            ratio = results["index"]["pages_per_s"] / results["direct"]["pages_per_s"]
            print(f"{name:16} index / direct = {ratio:.2f}x (target >= 0.9)", flush=True)


if __name__ == "__main__":
    main()
