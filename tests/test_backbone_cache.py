"""The cache of converted GGUF checkpoints behind `bundled-smollm2`: converted once, reused, converted again after
damage, a killed conversion's staging folder ignored; the `gguf_file` option. Each conversion takes ~20 s, so the
module converts once and the damage cases once each."""

import json
import logging
import re
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reaemb_trl.embedder import BUNDLED_SMOLLM2, resolve_backbone
from reaemb_trl.embedder.backbone import CONVERSION_RECORD, SMOLLM2_GGUF, bundled_smollm2_gguf
from reaemb_trl.errors import InputError

LOGGER = "reaemb_trl.embedder.backbone"


def file_stats(folder):
    """name -> (inode, mtime in ns, size): a rewritten or replaced file changes at least one of them."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()}


def logits_of(folder) -> torch.Tensor:
    """Logits of a real prompt, through the folder's own tokenizer and weights."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        return model(**tokenizer(["title is Stapler; brand is Swingline"], return_tensors="pt")).logits


def conversions(caplog) -> int:
    return sum(record.name == LOGGER and record.getMessage().startswith("converting") for record in caplog.records)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One conversion into a fresh cache that holds a killed conversion's staging folder: a complete copy of a
    converted folder, record included, renamed into place never. Returns (cache, folder, stats, logits)."""
    source = resolve_backbone(BUNDLED_SMOLLM2)  # the session's own cache (converted there once per machine)
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REAEMB_TRL_CACHE", str(cache))
        (cache / "gguf").mkdir()
        staging = shutil.copytree(source, cache / "gguf" / f".{source.rsplit('/', 1)[-1]}.x1y2z3.tmp")
        staging_stats = file_stats(staging)
        folder = resolve_backbone(BUNDLED_SMOLLM2)
    folder = cache / "gguf" / folder.rsplit("/", 1)[-1]
    assert str(folder) == str(cache / "gguf" / "SmolLM2-135M-Instruct.Q4_1-b179c9523d0e")
    # The staging folder was neither adopted nor touched: the folder is a conversion of its own.
    assert file_stats(staging) == staging_stats
    assert not set(file_stats(folder).values()) & set(staging_stats.values())
    return cache, folder, file_stats(folder), logits_of(folder)


@pytest.mark.slow
def test_first_call_converts_and_later_calls_reuse_the_folder(converted, monkeypatch, caplog):
    cache, folder, stats, logits = converted
    assert {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json",
            CONVERSION_RECORD} <= set(stats)
    record = json.loads((folder / CONVERSION_RECORD).read_text())
    assert record["source"] == SMOLLM2_GGUF and record["source_sha256"].startswith("b179c9523d0e")
    assert set(record["files"]) == set(stats) - {CONVERSION_RECORD}  # every other file is checked on reuse
    assert logits.shape == (1, 10, 49152) and torch.isfinite(logits).all()

    monkeypatch.setenv("REAEMB_TRL_CACHE", str(cache))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert resolve_backbone(BUNDLED_SMOLLM2) == str(folder)
    assert conversions(caplog) == 0 and file_stats(folder) == stats


@pytest.mark.slow
def test_gguf_file_option_gives_the_bundled_folder(converted, monkeypatch, caplog):
    cache, folder, stats, _ = converted
    monkeypatch.setenv("REAEMB_TRL_CACHE", str(cache))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    gguf = bundled_smollm2_gguf()
    assert resolve_backbone(str(gguf.parent), gguf_file=gguf.name) == str(folder)
    assert conversions(caplog) == 0 and file_stats(folder) == stats  # keyed by the GGUF file's content


def test_missing_gguf_file_is_an_input_error_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("REAEMB_TRL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputError, match=re.escape(str(tmp_path / "model" / SMOLLM2_GGUF))):
        resolve_backbone(str(tmp_path / "model"), gguf_file=SMOLLM2_GGUF)
    assert not (tmp_path / "cache").exists()  # nothing is created for a file that is not there


DAMAGES = {
    "truncated weights": lambda folder: (folder / "model.safetensors").write_bytes(
        (folder / "model.safetensors").read_bytes()[:1_000_000]),
    "deleted tokenizer file": lambda folder: (folder / "tokenizer.json").unlink(),
    "deleted record": lambda folder: (folder / CONVERSION_RECORD).unlink(),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_folder_is_converted_again(converted, tmp_path, monkeypatch, caplog, damage):
    _, folder, stats, logits = converted
    copy = shutil.copytree(folder, tmp_path / "gguf" / folder.name)
    monkeypatch.setenv("REAEMB_TRL_CACHE", str(tmp_path))
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert resolve_backbone(BUNDLED_SMOLLM2) == str(copy)  # an intact copy is reused: the record holds no paths
    assert conversions(caplog) == 0

    DAMAGES[damage](copy)
    assert resolve_backbone(BUNDLED_SMOLLM2) == str(copy)
    assert conversions(caplog) == 1
    assert any("incomplete or damaged conversion" in record.getMessage() for record in caplog.records)
    assert {name: size for name, (_, _, size) in file_stats(copy).items()} == {
        name: size for name, (_, _, size) in stats.items()}
    assert torch.equal(logits_of(copy), logits)
    assert not [p for p in (tmp_path / "gguf").iterdir() if p.name.endswith(".tmp")]  # no staging left behind
