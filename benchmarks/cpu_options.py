"""CPU inference options on the vision tower the small retrievers share, in one process.

    python benchmarks/cpu_options.py [--tiles 1] [--threads 2] [--options eager,sdpa,bf16,openvino,compile]

ColModernVBert and colSmol-256M both run SigLIP base-patch16-512 (12 layers x 768, 1024 patches per
512-px tile) over 10-13 tiles per letter page: most of a page's cost. This builds that tower with
seeded random weights (speed does not depend on the weight values), feeds it ``--tiles`` tiles and
times each option against float32 ``sdpa`` (transformers' default, what the colpali-engine reference
runs), with parity: the largest absolute difference of the last hidden states, relative to their
largest magnitude. A cheaper check than ``benchmarks/encode.py``'s variants on whole pages, for a
loaded machine; the same options, the same ratios to read.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from typing import Any

import torch


def _tower(attention: str) -> Any:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=512,
        patch_size=16,
    )
    config._attn_implementation = attention
    torch.manual_seed(0)
    return SiglipVisionModel(config).eval()


def _time(run: Any, pixels: torch.Tensor) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        run(pixels)  # warm up (first-call allocations, kernel choice; OpenVINO's graph has this shape)
        start = time.perf_counter()
        out = run(pixels)
        return time.perf_counter() - start, out.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiles", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--options", default="eager,sdpa,bf16,openvino")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    pixels = torch.rand(args.tiles, 3, 512, 512) * 2 - 1  # (tiles, 3, 512, 512), normalised like SigLIP's
    model = _tower("sdpa")
    base_s, base = _time(lambda x: model(pixel_values=x).last_hidden_state, pixels)
    scale = float(base.abs().max())
    print(
        f"SigLIP base-patch16-512, {args.tiles} tile(s), {args.threads} threads, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'option':9} {'s':>7} {'speed vs sdpa fp32':>19} {'max |Δ| / max |x|':>18} {'setup s':>8}")
    print(f"{'baseline':9} {base_s:7.2f} {1.0:18.2f}x {0.0:18.1e} {'':>8}", flush=True)
    for option in [o for o in args.options.split(",") if o]:
        setup = 0.0
        if option in ("eager", "sdpa"):
            model.set_attn_implementation(option)
            run = lambda x, m=model: m(pixel_values=x).last_hidden_state  # noqa: E731
        elif option == "bf16":
            model.set_attn_implementation("sdpa")
            half = copy.deepcopy(model).to(torch.bfloat16)
            run = lambda x, m=half: m(pixel_values=x.to(torch.bfloat16)).last_hidden_state  # noqa: E731
        elif option == "compile":
            model.set_attn_implementation("sdpa")
            compiled = torch.compile(model)
            start = time.perf_counter()
            with torch.inference_mode():
                compiled(pixel_values=pixels)
            setup = time.perf_counter() - start
            run = lambda x, m=compiled: m(pixel_values=x).last_hidden_state  # noqa: E731
        elif option == "openvino":
            try:
                import openvino as ov
            except ImportError as exc:  # not a project dependency: the option is not kept
                raise SystemExit(
                    "the openvino option needs OpenVINO: pip install 'openvino==2026.4.1'"
                ) from exc

            model.set_attn_implementation("sdpa")
            model.requires_grad_(False)  # the tracer refuses weights that require grad as constants

            class Tower(torch.nn.Module):
                def forward(self, x: torch.Tensor) -> torch.Tensor:
                    return model(pixel_values=x).last_hidden_state  # type: ignore[no-any-return]

            start = time.perf_counter()
            with torch.no_grad():
                converted = ov.convert_model(Tower().eval(), example_input=(pixels,))
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads}
            compiled_ov = ov.compile_model(converted, "CPU", config)
            setup = time.perf_counter() - start
            run = lambda x, m=compiled_ov: torch.from_numpy(m([x.numpy()])[0])  # noqa: E731
        else:
            raise SystemExit(f"unknown option {option!r}")
        seconds, out = _time(run, pixels)
        parity = float((out - base).abs().max()) / scale
        print(f"{option:9} {seconds:7.2f} {base_s / seconds:18.2f}x {parity:18.1e} {setup:8.1f}", flush=True)


if __name__ == "__main__":
    main()
