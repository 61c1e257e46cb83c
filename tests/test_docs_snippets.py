"""Snippets of the docs run as written: the RecBole block of `docs/export_formats.md` is read from the file itself and
run, unchanged, on a RecBole table exported from a tiny embedder on a few users of the bundled sample."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from reaemb_trl.cli import main as cli_main
from reaemb_trl.data import PreparedDataset

EXPORT_FORMATS_DOC = Path(__file__).resolve().parents[1] / "docs" / "export_formats.md"


def doc_blocks(path: Path, heading: str, language: str) -> list[str]:
    """The fenced `language` blocks of `path` under the markdown heading `heading`, up to the next heading of any
    level (lines inside fenced blocks are never headings), in order."""
    blocks, section, fence = [], False, None
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if fence is not None:
            if line.rstrip() == "```":
                if fence[0] == language and section:
                    blocks.append("".join(fence[1]))
                fence = None
            else:
                fence[1].append(line)
        elif line.startswith("```"):
            fence = (line[3:].strip(), [])
        elif re.match(r"#+ ", line):
            section = line.split(" ", 1)[1].strip() == heading
    return blocks


# Run after the documented block, in the same process: what the test compares.
CHECK = """
import sys
tokens = json.loads(sys.argv[1])
rows = model.item_embedding.weight.detach().numpy()
print(json.dumps({"shape": list(rows.shape), "hidden_size": config["hidden_size"],
                  "rows": {token: rows[dataset.token2id("item_id", token)].tolist() for token in tokens},
                  "valid": {key: float(value) for key, value in best_valid_result.items()},
                  "test": {key: float(value) for key, value in test_result.items()}}))
"""


def test_recbole_snippet_blocks_are_found():
    assert len(doc_blocks(EXPORT_FORMATS_DOC, "RecBole", "python")) == 1
    assert len(doc_blocks(EXPORT_FORMATS_DOC, "RecBole", "yaml")) == 1


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None,
                    reason="RecBole is not installed here (pip install recbole==1.2.1 to run this check)")
def test_recbole_snippet_runs_as_written(tiny_embedder_folder, small_dataset, tmp_path):
    """The documented YAML is what export writes, and the documented Python block trains SASRec for its one epoch on
    the exported table, with the table's rows as SASRec's item embedding (RecBole's own numbering)."""
    (snippet,) = doc_blocks(EXPORT_FORMATS_DOC, "RecBole", "python")
    (documented_yaml,) = doc_blocks(EXPORT_FORMATS_DOC, "RecBole", "yaml")
    folder = tmp_path / "recbole" / "office"
    assert cli_main(["export", "--model", str(tiny_embedder_folder), "--data", str(small_dataset),
                     "--output", str(folder / "office"), "--format", "recbole", "--batch-size", "16",
                     "--no-progress"]) == 0
    assert yaml.safe_load((folder / "office.recbole.yaml").read_text()) == yaml.safe_load(documented_yaml)

    dataset = PreparedDataset.load(small_dataset)
    with open(folder / "office.inter", "w", encoding="utf-8") as inter:
        inter.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user, sequence in enumerate(dataset.sequences, start=1):
            inter.writelines(f"u{user}\t{dataset.source_ids[item - 1]}\t{step}\n"
                             for step, item in enumerate(sequence))
    exported = {}
    with open(folder / "office.itememb", encoding="utf-8") as itememb:
        next(itememb)
        for line in itememb:
            token, values = line.rstrip("\n").split("\t")
            exported[token] = np.array(values.split(), dtype=np.float32)
    tokens = [dataset.source_ids[item - 1] for item in (1, 7, dataset.num_items)]

    # RecBole runs in its own process: the snippet patches numpy attributes process-wide.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", snippet + CHECK, json.dumps(tokens)], check=False,
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    dim = len(next(iter(exported.values())))
    assert loaded["shape"] == [dataset.num_items + 1, dim] and loaded["hidden_size"] == dim
    for token in tokens:  # the snippet keeps the table fixed, so the rows are still the exported ones after training
        np.testing.assert_array_equal(np.asarray(loaded["rows"][token], dtype=np.float32), exported[token])
    assert loaded["valid"] and loaded["test"]
    assert all(0.0 <= value <= 1.0 for value in [*loaded["valid"].values(), *loaded["test"].values()])
