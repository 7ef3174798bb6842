"""``mmembed eval``: retrieval quality (nDCG, recall, MRR) of an index against qrels, from
BEIR files or a ViDoRe dataset (see :mod:`mmembed.evaluate`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import index as index_command
from .arguments import Subparsers, model_args
from .errors import CLIError
from .options import encoder_options, open_existing
from .output import safe, safe_lines


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("eval", help="measure retrieval quality (nDCG, recall, MRR) against qrels")
    p.add_argument("--index", required=True, help="the index to evaluate (its pages are the corpus)")
    p.add_argument("--queries", help="BEIR queries.jsonl ({_id, text}) or id<TAB>text")
    p.add_argument("--qrels", help="BEIR qrels TSV (query-id, corpus-id, score), TREC or JSONL")
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="a BEIR page dataset by name instead of files: a Hub id (vidore/vidore_v3_hr, "
        "vidore/esg_reports_v2, ...) or a local copy's folder; its pages are indexed first",
    )
    p.add_argument("--split", default="test", help="with --dataset: the split (default test)")
    p.add_argument("--language", help="with --dataset: only queries in this language (e.g. english)")
    p.add_argument(
        "--corpus-dir", help="with --dataset: where its page images are written (default <index>-corpus)"
    )
    p.add_argument("--corpus", nargs="+", help="files / folders to index into --index first")
    p.add_argument("-k", type=int, default=100, help="pages retrieved per query (default 100)")
    p.add_argument(
        "--doc-ids",
        choices=["auto", "id", "source#page", "path#page"],
        default="auto",
        help="how the qrels name pages: mmembed page id, file name#page or full path#page (default: guess)",
    )
    p.add_argument("--metrics", nargs="+", help="ir-measures names (default nDCG@1,5,10 R@1,5,10,100 RR@10)")
    p.add_argument(
        "--compare", nargs="+", metavar="INDEX", help="other indexes (e.g. another model) side by side"
    )
    p.add_argument("--json", action="store_true")
    model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..encoders import load_encoder
    from ..evaluate import (
        DEFAULT_METRICS,
        evaluate,
        format_table,
        load_beir_dataset,
        load_qrels,
        load_queries,
    )
    from ..retrieve import Retriever

    doc_ids = args.doc_ids
    if args.dataset:
        if args.queries or args.qrels or args.corpus:
            raise CLIError(
                "--dataset brings its own queries, qrels and corpus; drop --queries / --qrels / --corpus"
            )
        dataset = load_beir_dataset(args.dataset, split=args.split, language=args.language)
        folder = args.corpus_dir or f"{args.index.rstrip('/')}-corpus"
        files = dataset.page_files(folder)
        queries, qrels = dataset.queries, dataset.file_qrels(files)
        args.corpus, doc_ids = [folder], "source#page"
        print(
            f"{safe(args.dataset)}: {len(queries)} queries, {len(files)} pages in {safe(folder)}",
            file=sys.stderr,
        )
    elif not (args.queries and args.qrels):
        raise CLIError("give --queries and --qrels (BEIR files), or --dataset vidore/<name>")
    else:
        queries, qrels = load_queries(args.queries), load_qrels(args.qrels)
    if args.corpus:  # index the corpus first (a no-op for files the index already holds)
        indexing = _index_parser().parse_args(["index", *args.corpus, "--index", args.index, "--quiet"])
        indexing.model, indexing.revision, indexing.device = args.model, args.revision, args.device
        code = index_command.run(indexing)
        if code:
            return code
    reports = []
    for path in [args.index, *(args.compare or [])]:
        index = open_existing(path, readonly=True)
        try:
            stored = index.encoder.name
            own_model = path == args.index and args.model
            encoder = load_encoder(
                args.model if own_model else stored,
                **encoder_options(args, None if own_model else index.encoder),
            )
            reports.append(
                evaluate(
                    Retriever(index, encoder),
                    queries,
                    qrels,
                    k=args.k,
                    doc_ids=doc_ids,
                    metrics=args.metrics or DEFAULT_METRICS,
                    name=f"{Path(path).name} ({Path(stored).name})",
                )
            )
        finally:
            index.close()
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        print(safe_lines(format_table(reports)))
    return 0


def _index_parser() -> argparse.ArgumentParser:
    """A parser of the ``index`` command alone (importing the full parser from ``main``
    would make an import circle: ``main`` imports this module)."""
    parser = argparse.ArgumentParser(prog="mmembed")
    index_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser
