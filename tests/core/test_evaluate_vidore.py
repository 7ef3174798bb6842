"""`mmembed eval --dataset`: a ViDoRe-style BEIR dataset by name, through Hugging Face datasets.

The hub is out of reach here, so the dataset is saved locally in the hub's own layout (a
README declaring the ``corpus`` / ``queries`` / ``qrels`` configs over parquet folders) and
loaded by ``datasets.load_dataset`` exactly as a hub id would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from mmembed.cli import main
from mmembed.evaluate import EvalError, load_beir_dataset

datasets = pytest.importorskip("datasets", reason="mmembed-core[vidore] is not installed")

CONFIGS = """---
configs:
- config_name: corpus
  data_files:
  - split: test
    path: corpus/test-*
- config_name: queries
  data_files:
  - split: test
    path: queries/test-*
- config_name: qrels
  data_files:
  - split: test
    path: qrels/test-*
---
"""


def page(colour: str, text: str) -> Image.Image:
    image = Image.new("RGB", (224, 280), colour)
    ImageDraw.Draw(image).text((20, 40), text, fill="black")
    return image


def save_vidore_like(folder: Path, *, v3: bool) -> Path:
    """Three pages, three queries (one French), graded qrels; v2 or v3 column names."""
    cid, qid = ("corpus_id", "query_id") if v3 else ("corpus-id", "query-id")
    features = datasets.Features({cid: datasets.Value("int64"), "image": datasets.Image()})
    subsets = {
        "corpus": datasets.Dataset.from_dict(
            {
                cid: [11, 12, 13],
                "image": [page("white", "solar"), page("yellow", "wind"), page("cyan", "coal")],
            },
            features=features,
        ),
        "queries": datasets.Dataset.from_dict(
            {
                qid: [1, 2, 3],
                "query": ["solar power", "wind farms", "éolien"],
                "language": ["english", "english", "french"],
            }
        ),
        "qrels": datasets.Dataset.from_dict(
            {qid: [1, 2, 2, 3], cid: [11, 12, 13, 12], "score": [2, 1, 1, 1]}
        ),
    }
    for name, subset in subsets.items():
        (folder / name).mkdir(parents=True)
        subset.to_parquet(str(folder / name / "test-00000-of-00001.parquet"))
    (folder / "README.md").write_text(CONFIGS)
    return folder


@pytest.mark.parametrize("v3", [False, True])
def test_loads_both_vidore_column_layouts(tmp_path: Path, v3: bool) -> None:
    dataset = load_beir_dataset(str(save_vidore_like(tmp_path / "ds", v3=v3)), language="english")
    assert dataset.queries == {"1": "solar power", "2": "wind farms"}  # the French query left out
    assert dataset.qrels == {"1": {"11": 2}, "2": {"12": 1, "13": 1}}
    files = dataset.page_files(tmp_path / "pages")
    assert sorted(p.name for p in files.values()) == ["11.png", "12.png", "13.png"]
    assert Image.open(files["12"]).getpixel((5, 5)) == (255, 255, 0)  # the page's own pixels
    assert dataset.file_qrels(files)["2"] == {"12.png#1": 1, "13.png#1": 1}


def test_eval_by_dataset_equals_eval_by_files(
    tmp_path: Path, tiny_colqwen2_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = save_vidore_like(tmp_path / "ds", v3=True)
    model = ["--model", str(tiny_colqwen2_5)]
    index = str(tmp_path / "index")
    assert (
        main(["eval", "--index", index, "--dataset", str(folder), "--language", "english", "--json", *model])
        == 0
    )
    out, err = capsys.readouterr()
    by_name = json.loads(out[out.index("\n[") :])[0]  # after the indexing summary
    assert by_name["queries"] == 2 and "2 queries, 3 pages" in err
    assert by_name["metrics"]["R@100"] == 1.0  # every page retrieved: each relevant one found
    # The same pages, queries and qrels as BEIR files: the same numbers.
    (tmp_path / "queries.jsonl").write_text(
        '{"_id": "1", "text": "solar power"}\n{"_id": "2", "text": "wind farms"}\n'
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\t11.png#1\t2\n2\t12.png#1\t1\n2\t13.png#1\t1\n"
    )
    other = str(tmp_path / "index-files")
    args = ["--queries", str(tmp_path / "queries.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")]
    assert main(["eval", "--index", other, *args, "--corpus", f"{index}-corpus", "--json", *model]) == 0
    out = capsys.readouterr().out
    by_files = json.loads(out[out.index("\n[") :])[0]
    assert by_files["metrics"] == pytest.approx(by_name["metrics"], abs=1e-6)
    # A second run finds the pages already written and indexed.
    assert main(["eval", "--index", index, "--dataset", str(folder), "--language", "english", *model]) == 0
    assert "nDCG@10" in capsys.readouterr().out


def test_unreachable_hub_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    with pytest.raises(EvalError, match=r"cannot load the 'corpus' subset of vidore/vidore_v3_hr.*local"):
        load_beir_dataset("vidore/vidore_v3_hr")
    assert main(["eval", "--index", str(tmp_path / "i"), "--dataset", "vidore/vidore_v3_hr"]) == 1
    assert "--dataset FOLDER" in capsys.readouterr().err
    with pytest.raises(EvalError, match="neither a folder nor a Hub dataset id"):
        load_beir_dataset("not-a-dataset")
    with pytest.raises(SystemExit) as usage:  # neither files nor a dataset: a usage error (exit 2)
        main(["eval", "--index", str(tmp_path / "i")])
    assert usage.value.code == 2
    assert "--dataset vidore/<name>" in capsys.readouterr().err
