"""Render throughput and peak memory: mmembed's pypdfium2 loader vs pdf2image's default path.

    python benchmarks/render.py [--pages 200] [--dpi 144] [--with-poppler-backend]

Builds one realistic multi-page PDF (text, tables, charts), then renders every page of it
in a fresh child process per method, so that each peak RSS is the method's own:

- ``mmembed``: ``load_pages(pdf, dpi=…)`` — pypdfium2, page by page, prefetch worker,
  ``page.release()`` after each page (what the indexing pipeline does);
- ``pdf2image``: ``pdf2image.convert_from_path(pdf, dpi=…)`` — its default path, which
  returns all pages at once;
- ``mmembed[pdf2image]`` (with ``--with-poppler-backend``): the loader's poppler backend.

Peak RSS is measured from the moment imports are done (Linux ``clear_refs``), so it is
the render working set plus the interpreter and libraries, not import-time transients.
Targets (issue 3): mmembed ≥ 2.5× pdf2image's pages/s, and peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEED_TARGET = 2.5
RSS_TARGET_MB = 150.0


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(method: str, pdf: str, dpi: int) -> dict[str, float | int | str | bool]:
    """Run one method in this (fresh) process and report pages, seconds and memory."""
    if method == "pdf2image":
        import pdf2image

        reset = _reset_peak_rss()
        start = time.perf_counter()
        images = pdf2image.convert_from_path(pdf, dpi=dpi)
        pages = len(images)
        size = images[0].size
        del images
    else:
        from mmembed.loaders import load_pages

        backend = "pdf2image" if method == "mmembed[pdf2image]" else "pypdfium2"
        reset = _reset_peak_rss()
        start = time.perf_counter()
        pages, size = 0, (0, 0)
        with load_pages(pdf, dpi=dpi, backend=backend) as stream:
            for page in stream:
                size = page.image.size
                page.release()
                pages += 1
            if stream.issues:
                raise SystemExit(stream.summary())
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "pages": pages,
        "seconds": seconds,
        "pages_per_s": pages / seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_reset": reset,
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "size": f"{size[0]}x{size[1]}",
    }


def run_child(method: str, pdf: Path, dpi: int) -> dict[str, float | int | str | bool]:
    command = [sys.executable, __file__, "--child", method, "--pdf", str(pdf), "--dpi", str(dpi)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{method} failed:\n{result.stderr or result.stdout}")
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--dpi", type=int, default=144)
    parser.add_argument(
        "--with-poppler-backend", action="store_true", help="also time the loader's pdf2image backend"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--pdf", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.pdf, args.dpi)))
        return 0

    from mmembed.loaders.sample_pdfs import write_long_pdf

    poppler = shutil.which("pdftoppm") is not None and shutil.which("pdfinfo") is not None
    with tempfile.TemporaryDirectory(prefix="mmembed-render-bench-") as tmp:
        pdf = write_long_pdf(Path(tmp) / f"bench_{args.pages}p.pdf", args.pages)
        print(
            f"PDF: {args.pages} pages (text, tables, charts), {pdf.stat().st_size / 1e6:.1f} MB, {args.dpi:g} dpi"
        )
        methods = ["mmembed"]
        if poppler:
            methods.append("pdf2image")
            if args.with_poppler_backend:
                methods.append("mmembed[pdf2image]")
        results = {method: run_child(method, pdf, args.dpi) for method in methods}

    print(f"\n{'method':<22}{'pages':>6}{'seconds':>9}{'pages/s':>9}{'peak RSS MB':>13}  size")
    for res in results.values():
        print(
            f"{res['method']:<22}{res['pages']:>6}{res['seconds']:>9.2f}{res['pages_per_s']:>9.1f}"
            f"{res['peak_rss_mb']:>13.0f}  {res['size']}"
        )
    ours = results["mmembed"]
    rss_ok = float(ours["peak_rss_mb"]) < RSS_TARGET_MB
    print(
        f"\nmmembed peak RSS: {ours['peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB:.0f} MB): {'OK' if rss_ok else 'MISSED'}"
    )
    if not poppler:
        print(
            "\npdf2image's baseline needs poppler, which is not installed: "
            "`apt-get install -y poppler-utils` (macOS: `brew install poppler`), then run again."
        )
        return 1
    base = results["pdf2image"]
    speed = float(ours["pages_per_s"]) / float(base["pages_per_s"])
    memory = float(base["peak_rss_mb"]) / float(ours["peak_rss_mb"])
    speed_ok = speed >= SPEED_TARGET
    print(
        f"speed ratio mmembed / pdf2image default: {speed:.2f}x (target >= {SPEED_TARGET}x): {'OK' if speed_ok else 'MISSED'}"
    )
    print(f"memory ratio pdf2image default / mmembed peak RSS: {memory:.1f}x")
    if "mmembed[pdf2image]" in results:
        other = results["mmembed[pdf2image]"]
        print(
            f"speed ratio mmembed / mmembed[pdf2image]: {float(ours['pages_per_s']) / float(other['pages_per_s']):.2f}x"
        )
    return 0 if speed_ok and rss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
