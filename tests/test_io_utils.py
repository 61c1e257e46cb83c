"""Crash-safe writes shared by every stage."""

import pytest

from reaemb_trl.io_utils import sha256_json, staged_update


def test_staged_update_replaces_its_entries_and_keeps_the_rest(tmp_path):
    target = tmp_path / "model"
    (target / "adapter").mkdir(parents=True)
    (target / "adapter" / "old.safetensors").write_text("old")
    (target / "checkpoints").mkdir()
    with staged_update(target, last="config.json") as staging:
        (staging / "adapter").mkdir()
        (staging / "adapter" / "new.safetensors").write_text("new")
        (staging / "config.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["adapter", "checkpoints", "config.json"]
    assert [p.name for p in (target / "adapter").iterdir()] == ["new.safetensors"]


def test_staged_update_leaves_the_target_untouched_when_the_block_fails(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("before")
    with pytest.raises(RuntimeError):
        with staged_update(target) as staging:
            (staging / "config.json").write_text("after")
            raise RuntimeError("killed mid-write")
    assert [p.name for p in target.iterdir()] == ["config.json"]
    assert (target / "config.json").read_text() == "before"


def test_sha256_json_ignores_key_order():
    assert sha256_json({"a": 1, "b": [1, 2]}) == sha256_json({"b": [1, 2], "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})
