"""Crash-safe writes shared by every stage, and the clear error of a write the machine refuses."""

import contextlib
import json
import re
import resource

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


@contextlib.contextmanager
def file_size_limit(limit: int):
    """The kernel refuses (EFBIG) any write past `limit` bytes of a file while the block runs: a real refused write,
    like a full disk, without root (Python ignores SIGXFSZ, so the write fails instead of killing the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_refused_write_names_the_file_keeps_the_old_one_and_leaves_no_scratch(tmp_path):
    from reaemb_trl.errors import InputError
    from reaemb_trl.io_utils import atomic_output_dir, write_json

    path = tmp_path / "results.json"
    write_json(path, {"old": True})
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "kept.txt").write_text("old")
    with file_size_limit(4096):
        with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: cannot write it: File too large; the "
                                             "earlier results.json, if any, is unchanged"):
            write_json(path, {"rows": list(range(10_000))})
        with pytest.raises(InputError, match=rf"^{re.escape(str(folder))}: cannot write it: File too large"):
            with atomic_output_dir(folder, overwrite=True) as new:
                (new / "big.txt").write_text("x" * 10_000)
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in folder.iterdir()] == ["kept.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "results.json"]  # no scratch beside them


def test_a_refused_safetensors_write_is_named_too(tmp_path):
    """safetensors reports the kernel's refusal in its own error type, "... (os error 27)": read the same way."""
    import torch
    from safetensors.torch import save_file

    from reaemb_trl.errors import InputError
    from reaemb_trl.io_utils import atomic_path

    path = tmp_path / "table.safetensors"
    with file_size_limit(4096), pytest.raises(InputError, match="table.safetensors: cannot write it: File too large"):
        with atomic_path(path) as tmp:
            save_file({"embeddings": torch.zeros(10_000)}, str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_a_refused_numpy_write_is_named_too(tmp_path):
    """np.save reports a short write as a bare OSError ("N requested and M written", no errno): still a refused
    write, named with its file."""
    import numpy as np

    from reaemb_trl.errors import InputError
    from reaemb_trl.io_utils import atomic_path

    path = tmp_path / "table.npy"
    with file_size_limit(4096), pytest.raises(InputError, match="table.npy: cannot write it: the file system took "
                                                                "only part of the write"):
        with atomic_path(path) as tmp:
            np.save(tmp, np.zeros(10_000))
    assert list(tmp_path.iterdir()) == []


def test_other_errors_inside_an_atomic_write_pass_through_unchanged(tmp_path):
    from reaemb_trl.io_utils import atomic_path

    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "out.txt"):
            open(tmp_path / "missing" / "input.txt").read()
    assert list(tmp_path.iterdir()) == []
