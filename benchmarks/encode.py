"""Indexing speed at real model size: pages/s and peak RSS, the model called directly vs `mmembed index`.

    python benchmarks/encode.py [--models colmodernvbert,colsmol] [--pages 2] [--batch-size 2] [--threads 2]
                                [--variants sdpa,bf16,compile]
    python benchmarks/encode.py --models colqwen2.5-3b --pages 1 --batch-size 1 --variants ""

Models (``SPECS``) are **full-size checkpoints with random weights**, written from the published
configs (below, in code; no Hub access). Speed and memory depend on the architecture and the page
size, not on the weight values, so these measure what the published checkpoints would:

- ``colmodernvbert``: ModernVBert (ModernBERT-base text model, 22 layers x 768 + SigLIP
  base-patch16-512, pixel shuffle 4), 512-px tiles, longest edge 2048 (~250M parameters);
- ``colsmol``: colSmol-256M = ColIdefics3 over SmolVLM-256M (SmolLM2-135M, 30 layers x 576 + SigLIP
  base-patch16-512, scale factor 4), 512-px tiles, longest edge 1536;
- ``colqwen2.5-3b``: ColQwen2.5 over Qwen2.5-VL-3B (36 layers x 2048, vision 32 x 1280), 768 visual
  tokens per page at most (``max_pixels`` 602112, as vidore's ColQwen2 preprocessor configs set it);
  ~15 GB in float32: opt-in, refused below 18 GB of available memory.

The pages are sample PDF pages rendered at 144 dpi (1224x1584, letter). One child process per model
(same threads) runs, in order, and prints each result as soon as it has it:

1. ``direct``: the reference way: colpali-engine's model class (built from the config with seeded
   random weights) and processor, forward on the pre-rendered pages, ``batch_size`` pages per call
   (rendering not counted), with the attention the reference gets by default (transformers picks
   ``sdpa``). Then the model is dropped.
2. ``index``: ``mmembed index`` end to end on a PDF of those pages (render + encode + write; the
   model is loaded before the clock starts), with mmembed's defaults (``eager`` attention on CPU);
   with ``--index-sdpa`` also ``index sdpa`` (``--option attn_implementation=sdpa``), the same
   attention as ``direct``: that ratio is the pipeline's own overhead.
3. each of ``--variants`` on the reference model rebuilt with the same weights: ``eager``
   attention, ``sdpa``, ``bf16`` (weights and pixels in bfloat16), ``compile`` (``torch.compile``;
   its first, compiling call is timed apart), ``openvino`` (the model converted by OpenVINO and
   compiled for the CPU in float32; conversion timed apart). Each is printed with its speed ratio
   against ``direct`` and its parity: the largest absolute difference of the L2-normalised token
   vectors against ``direct``'s.

Peak RSS is sampled (/proc/self/status, every 20 ms) per phase, from the model load to the end.
The ratios are measured in the same process one after another; on a machine shared with other
jobs, read them with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TILE = 512
SPECS: dict[str, dict[str, Any]] = {
    "colmodernvbert": {"reference": "ColModernVBert", "longest_edge": 2048},
    "colsmol": {"reference": "ColIdefics3", "longest_edge": 1536},
    "colqwen2.5-3b": {"reference": "ColQwen2_5", "max_pixels": 768 * 28 * 28, "min_memory_gb": 18},
}
VARIANTS = ("eager", "sdpa", "bf16", "compile", "openvino")


# -- checkpoints -------------------------------------------------------------------------------


def _siglip_base_512() -> dict[str, Any]:
    return {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": TILE,
        "patch_size": 16,
    }


def _write_idefics3_style(name: str, folder: Path) -> None:
    """ColModernVBert / colSmol-256M: the full model built in memory (~1 GB) and saved."""
    import torch
    from safetensors.torch import save_file
    from transformers import Idefics3ImageProcessor

    tokenizer: Any
    config: Any
    if name == "colmodernvbert":
        from transformers import ModernVBertConfig, ModernVBertModel

        from mmembed_testing import tiny_modernvbert

        tokenizer = tiny_modernvbert.make_tokenizer()
        config = ModernVBertConfig(
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
        hidden, head_name, processor_class = 768, "custom_text_proj", "ColModernVBertProcessor"
    else:
        from transformers import Idefics3Config, Idefics3Model

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
        hidden, head_name, processor_class = 576, "linear", "ColIdefics3Processor"
    config.save_pretrained(folder)
    weights = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    head = torch.nn.Linear(hidden, 128)
    weights.update({f"{head_name}.{k}": v for k, v in head.state_dict().items()})
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    Idefics3ImageProcessor(
        size={"longest_edge": SPECS[name]["longest_edge"]},
        max_image_size={"longest_edge": TILE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "processor_config.json").write_text(
        json.dumps({"image_seq_len": 64, "processor_class": processor_class}) + "\n"
    )


def _write_colqwen2_5_3b(folder: Path) -> None:
    """ColQwen2.5 over Qwen2.5-VL-3B (its published config.json, in code). The model is built on
    the meta device and its weights written shard by shard (normal(0, 0.02)), so writing never
    holds the 3B model in memory."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    from mmembed_testing.tiny_qwen_vl import set_processor_class
    from mmembed_testing.tiny_tokenizers import make_qwen2_tokenizer

    tokenizer = make_qwen2_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128000,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [16, 24, 24],
                "rope_theta": 1000000.0,
            },
            "bos_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 32,
            "hidden_size": 1280,
            "intermediate_size": 3420,
            "num_heads": 16,
            "out_hidden_size": 2048,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31],
            "tokens_per_second": 2,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    config.architectures = ["ColQwen2_5"]
    config.save_pretrained(folder)
    with torch.device("meta"):
        shapes = {k: (v.shape, v.dtype) for k, v in Qwen2_5_VLModel(config).state_dict().items()}
    shapes["custom_text_proj.weight"] = (torch.Size([128, 2048]), torch.float32)
    shapes["custom_text_proj.bias"] = (torch.Size([128]), torch.float32)
    generator = torch.Generator().manual_seed(0)
    shard: dict[str, Any] = {}
    index: dict[str, str] = {}
    size, number = 0, 0

    def flush() -> None:
        nonlocal shard, size, number
        if shard:
            number += 1
            name = f"model-{number:05d}.safetensors"
            save_file(shard, str(folder / name), metadata={"format": "pt"})
            index.update(dict.fromkeys(shard, name))
            shard, size = {}, 0

    for key, (shape, dtype) in sorted(shapes.items()):
        value = torch.empty(shape, dtype=dtype)
        if key.endswith("norm.weight") or key.endswith(("ln_q.weight", "norm1.weight", "norm2.weight")):
            value.fill_(1.0)
        else:
            value.normal_(0.0, 0.02, generator=generator)
        shard[key] = value
        size += value.numel() * value.element_size()
        if size > 1 << 30:
            flush()
    flush()
    total = sum(s.numel() * 4 for s, _ in shapes.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index}) + "\n"
    )
    pixels = SPECS["colqwen2.5-3b"]["max_pixels"]
    Qwen2VLImageProcessor(min_pixels=3136, max_pixels=pixels).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    set_processor_class(folder, "ColQwen2_5_Processor")


def write_checkpoint(name: str, folder: Path) -> Path:
    """A full-size random-weight checkpoint in colpali-engine's layout, with real-size processor
    settings and the tiny builders' tokenizer (a page's prompt is a few tokens beside its
    hundreds of image tokens: the vocabulary's content does not change the cost)."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "colqwen2.5-3b":
        _write_colqwen2_5_3b(folder)
    else:
        _write_idefics3_style(name, folder)
    return folder


# -- measuring ---------------------------------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def peak_rss(into: dict[str, float], key: str = "peak_rss_mb") -> Iterator[None]:
    """The largest resident set size seen while the block runs (sampled every 20 ms)."""
    peak = [_rss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        into[key] = max(peak[0], _rss_mb())


def _load_average() -> float:
    return os.getloadavg()[0]


def run_index(
    checkpoint: Path, pdf: Path, pages: int, batch_size: int, folder: Path, attention: str | None
) -> dict[str, float]:
    import mmembed
    from mmembed.cli import main
    from mmembed.encoders.cache import clear_encoder_cache

    options = {} if attention is None else {"attn_implementation": attention}
    result: dict[str, float] = {}
    with peak_rss(result):
        mmembed.load_encoder(str(checkpoint), device="cpu", dtype="float32", **options)  # outside the clock
        load = _load_average()
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries this child's JSON lines only
            code = main(
                [
                    "index", str(pdf), "--index", str(folder / f"idx-{attention}"), "--model", str(checkpoint),
                    "--device", "cpu", "--batch-size", str(batch_size), "-q",
                    *([] if attention is None else ["--option", f"attn_implementation={attention}"]),
                ]
            )  # fmt: skip
        seconds = time.perf_counter() - start
    clear_encoder_cache()
    gc.collect()
    if code != 0:
        raise SystemExit(f"mmembed index failed ({code})")
    return {**result, "pages_per_s": pages / seconds, "seconds": seconds, "load": load}


def _reference(name: str, checkpoint: Path) -> tuple[Any, Any]:
    """colpali-engine's model class (random weights: built from the config, no loading) and
    processor, as its README calls them."""
    import colpali_engine.models as cm
    import torch

    reference = SPECS[name]["reference"]
    model_class, processor_class = {
        "ColModernVBert": (cm.ColModernVBert, cm.ColModernVBertProcessor),
        "ColIdefics3": (cm.ColIdefics3, cm.ColIdefics3Processor),
        "ColQwen2_5": (cm.ColQwen2_5, cm.ColQwen2_5_Processor),
    }[reference]
    config_class = model_class.config_class
    torch.manual_seed(0)  # the same random weights each time this process builds it
    model = model_class(config_class.from_pretrained(str(checkpoint)))
    return model.eval(), processor_class.from_pretrained(str(checkpoint))


class OpenVINOModel:
    """The reference model converted by OpenVINO (``openvino.convert_model`` traces it with example
    inputs) and compiled for the CPU in float32, one compiled graph per input shape: the trace
    bakes in the tile count and the sequence length (pages of one size share them)."""

    def __init__(self, model: Any, batches: list[dict[str, Any]]) -> None:
        try:
            import openvino as ov
        except ImportError as exc:  # not a project dependency: the option is not kept
            raise SystemExit("the openvino option needs OpenVINO: pip install 'openvino==2026.4.1'") from exc
        import torch

        model.requires_grad_(False)  # the tracer refuses weights that require grad as constants
        self.names = list(batches[0])
        names = self.names

        class Positional(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: Any) -> Any:
                return self.model(**dict(zip(names, tensors, strict=True)))

        self.compiled: dict[tuple[Any, ...], Any] = {}
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        for batch in batches:
            key = tuple(tuple(batch[n].shape) for n in names)
            if key not in self.compiled:
                example = tuple(batch[n] for n in names)
                with torch.no_grad():
                    converted = ov.convert_model(Positional().eval(), example_input=example)
                self.compiled[key] = ov.compile_model(converted, "CPU", config)

    def __call__(self, **inputs: Any) -> Any:
        import torch

        key = tuple(tuple(inputs[n].shape) for n in self.names)
        return torch.from_numpy(self.compiled[key]([inputs[n].numpy() for n in self.names])[0])


def _forward_all(model: Any, batches: list[dict[str, Any]], dtype: Any = None) -> tuple[float, list[Any]]:
    import torch

    outputs = []
    with torch.inference_mode():
        start = time.perf_counter()
        for batch in batches:
            inputs = dict(batch)
            if dtype is not None:
                inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            out = model(**inputs)  # (batch, tokens, 128), L2-normalised per token
            outputs.append(out.float())
        seconds = time.perf_counter() - start
    return seconds, outputs


def _parity(outputs: list[Any], baseline: list[Any]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(outputs, baseline, strict=True))


def run_direct(
    name: str, checkpoint: Path, images: list[Any], batch_size: int
) -> tuple[dict[str, float], list[Any], str]:
    """The reference call; returns its result row, its outputs (the parity baseline) and the
    attention implementation the reference got by default."""
    result: dict[str, float] = {}
    with peak_rss(result):
        model, processor = _reference(name, checkpoint)
        attention = model.config._attn_implementation
        load = _load_average()
        batches, processing = _batches(model, processor, images, batch_size)
        seconds, baseline = _forward_all(model, batches)
        seconds += processing
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    result.update(
        pages_per_s=len(images) / seconds, seconds=seconds, tokens_per_page=tokens / len(images), load=load
    )
    return result, baseline, attention


def _batches(
    model: Any, processor: Any, images: list[Any], batch_size: int
) -> tuple[list[dict[str, Any]], float]:
    """The processor's batches and the seconds it took to make them (part of every timed pass:
    the reference runs its processor on each batch before the forward)."""
    import torch

    with torch.inference_mode():
        model(**processor.process_queries(["warm up"]))
    start = time.perf_counter()
    batches = [
        processor.process_images(images[i : i + batch_size]) for i in range(0, len(images), batch_size)
    ]
    return batches, time.perf_counter() - start


def run_variant(
    variant: str,
    model: Any,
    processor: Any,
    batches: list[dict[str, Any]],
    processing: float,
    attention: str,
    baseline: list[Any],
) -> dict[str, float]:
    import torch

    entry: dict[str, float] = {"load": _load_average()}
    target, dtype = model, None
    with peak_rss(entry):
        if variant in ("eager", "sdpa"):
            model.set_attn_implementation(variant)
        elif variant == "bf16":  # a copy: casting back would leave the float32 weights rounded
            model.set_attn_implementation(attention)
            target, dtype = copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16
        elif variant == "compile":
            model.set_attn_implementation(attention)
            target = torch.compile(model)
            first = time.perf_counter()
            _forward_all(target, batches[:1])  # compiles
            entry["compile_s"] = time.perf_counter() - first
        elif variant == "openvino":
            model.set_attn_implementation(attention)
            first = time.perf_counter()
            target = OpenVINOModel(model, batches)  # converts and compiles, once per input shape
            entry["compile_s"] = time.perf_counter() - first
        else:
            raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        if variant != "openvino":
            with torch.inference_mode():
                target(**processor.process_queries(["warm up"]))
        seconds, outputs = _forward_all(target, batches, dtype)
        seconds += processing  # the same processor time as `direct`
        del target
        gc.collect()
    pages = sum(len(b["input_ids"]) for b in batches)
    entry.update(pages_per_s=pages / seconds, seconds=seconds, max_abs_diff=_parity(outputs, baseline))
    return entry


def child(args: argparse.Namespace) -> None:
    """Prints one JSON line per measurement as soon as it is taken."""
    import pypdfium2 as pdfium
    import torch

    torch.set_num_threads(args.threads)
    doc = pdfium.PdfDocument(str(args.pdf))
    images = [doc[i].render(scale=2).to_pil().convert("RGB") for i in range(len(doc))]  # 144 dpi
    doc.close()

    def emit(mode: str, result: dict[str, Any]) -> None:
        print(json.dumps({"mode": mode, **result}), flush=True)

    attention, baseline = "sdpa", list[Any]()
    if not args.skip_direct:
        direct, baseline, attention = run_direct(args.name, args.checkpoint, images, args.batch_size)
        emit("direct", {**direct, "attention": attention})
        gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        emit("index", run_index(args.checkpoint, args.pdf, len(images), args.batch_size, Path(tmp), None))
        if args.index_sdpa:
            emit(
                "index sdpa",
                run_index(args.checkpoint, args.pdf, len(images), args.batch_size, Path(tmp), "sdpa"),
            )
    variants = [v for v in args.variants.split(",") if v]
    if variants and baseline:
        model, processor = _reference(args.name, args.checkpoint)  # the same seeded weights as `direct`
        batches, processing = _batches(model, processor, images, args.batch_size)
        for variant in variants:
            emit(variant, run_variant(variant, model, processor, batches, processing, attention, baseline))


# -- the parent: one child per model, then the table -------------------------------------------


def _available_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _pdf_of(pages: int, folder: Path) -> Path:
    import pypdfium2 as pdfium

    from mmembed.loaders.sample_pdfs import write_sample_pdfs

    source = pdfium.PdfDocument(str(sorted(write_sample_pdfs(folder / "samples"))[0]))
    out = pdfium.PdfDocument.new()
    out.import_pages(source, [i % len(source) for i in range(pages)])
    path = folder / f"pages-{pages}.pdf"
    out.save(str(path))
    return path


def _row(name: str, mode: str, r: dict[str, float], direct: float | None) -> str:
    tokens = f"{r['tokens_per_page']:.0f}" if "tokens_per_page" in r else ""
    parity = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
    extra = f"  (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""
    rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else ""
    ratio = f"{r['pages_per_s'] / direct:.2f}x" if direct else ""
    return (
        f"{name:15} {mode:11} {r['pages_per_s']:8.4f} {r['seconds']:8.1f} {ratio:>7} "
        f"{rss:>9} {tokens:>7} {parity:>9} {r['load']:5.1f}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--models", default="colmodernvbert,colsmol", help=f"comma-separated: {', '.join(SPECS)}"
    )
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="eager,bf16", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument(
        "--index-sdpa", action="store_true", help="also run `mmembed index` with sdpa attention"
    )
    parser.add_argument(
        "--skip-direct", action="store_true", help="only `mmembed index` (no direct call, no variants)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pdf", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    unknown = sorted(set(args.models.split(",")) - set(SPECS))
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(SPECS)}")
    print(
        f"pages={args.pages} batch_size={args.batch_size} threads={args.threads}, 1224x1584 pages, float32 CPU, "
        "random weights (speed does not depend on the weight values)"
    )
    print(
        f"{'model':15} {'mode':11} {'pages/s':>8} {'s':>8} {'ratio':>7} {'peak MB':>9} {'tok/pg':>7} "
        f"{'max |Δ|':>9} {'load':>5}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        pdf = _pdf_of(args.pages, Path(tmp))
        for name in args.models.split(","):
            need = SPECS[name].get("min_memory_gb")
            if need and _available_gb() < need:
                print(f"{name:15} skipped: {_available_gb():.1f} GB available, needs {need} GB", flush=True)
                continue
            checkpoint = write_checkpoint(name, Path(tmp) / name)
            command = [
                sys.executable, __file__, "--child", "--name", name, "--checkpoint", str(checkpoint),
                "--pdf", str(pdf), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                "--variants", args.variants, *(["--index-sdpa"] if args.index_sdpa else []),
                *(["--skip-direct"] if args.skip_direct else []),
            ]  # fmt: skip
            with tempfile.TemporaryFile("w+") as errors:
                child_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
                assert child_process.stdout is not None
                rows: dict[str, dict[str, Any]] = {}
                for line in child_process.stdout:
                    if not line.startswith("{"):
                        continue
                    row = json.loads(line)
                    mode = row.pop("mode")
                    rows[mode] = row
                    if mode == "direct":
                        print(f"# {name}: the reference runs with attention {row['attention']!r}", flush=True)
                    direct = rows.get("direct", {}).get("pages_per_s")
                    print(_row(name, mode, row, direct), flush=True)
                if child_process.wait() != 0:
                    errors.seek(0)
                    print(f"{name} failed:\n{errors.read()[-3000:]}", flush=True)
            if "index" in rows and "direct" in rows:
                ratio = rows["index"]["pages_per_s"] / rows["direct"]["pages_per_s"]
                print(f"{name:15} index / direct = {ratio:.2f}x (target >= 0.9)", flush=True)


if __name__ == "__main__":
    main()
