"""The dependency rules of ARCHITECTURE.md, checked on every import statement of the package (lazy imports inside
functions included) and, for the layers that must stay light, on what importing them really loads."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reaemb_trl"
SHARED = {"errors", "io_utils", "validation"}  # every layer may use these
# the stages that parse recipes, launch, write checkpoints and plot their curves
TRAINING = {"recipe", "training_state", "launch", "hub", "curves"}
# layer -> the reaemb_trl layers it may import (besides itself and SHARED)
ALLOWED = {
    "data": set(),
    "embedder": set(),
    "rewards": set(),
    "lrcl": {"data", "embedder"} | TRAINING,
    "crrl": {"data", "embedder", "rewards"} | TRAINING,
    "export": {"data", "embedder", "lrcl"},  # lrcl: each loss says which similarity it trains for
    "downstream": {"data"},
    "pipeline": {"data", "embedder", "lrcl", "rewards", "crrl", "export", "downstream"} | TRAINING,
}
# layer -> third-party packages it must not import
BANNED_LIBRARIES = {
    "data": {"torch", "transformers", "trl", "peft", "accelerate"},
    "embedder": {"trl"},  # (accelerate arrives with peft)
    "rewards": {"trl", "transformers", "peft", "accelerate"},
    "downstream": {"transformers", "trl", "peft", "accelerate"},
}


def _imports(file: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `file`, relative imports resolved."""
    package = ".".join(file.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    if file.name == "__init__.py":
        package = ".".join(file.relative_to(PACKAGE.parent).parts[:-1])
    found = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, module))
            # `from . import x` / `from .. import x` name submodules
            if node.module is None:
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _violations() -> list[str]:
    problems = []
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE).parts
        layer = parts[0] if len(parts) > 1 else None
        entry_point = {"recipe"} if file.name == "cli.py" else set()  # a sub-command parses its flags like the rest
        for line, module in _imports(file):
            where = f"{file.relative_to(PACKAGE.parent)}:{line} imports {module}"
            names = module.split(".")
            if names[0] == "reaemb_trl" and len(names) > 1:
                target = names[1]
                if target == "testing" and file.name != "testing.py":
                    problems.append(f"{where}: `testing` is for tests and benchmarks only")
                elif layer in ALLOWED and target != layer and target not in SHARED | ALLOWED[layer] | entry_point:
                    problems.append(f"{where}: the {layer} layer may import only {sorted(ALLOWED[layer] | SHARED)}")
            elif layer in BANNED_LIBRARIES and names[0] in BANNED_LIBRARIES[layer]:
                problems.append(f"{where}: the {layer} layer must not import {names[0]}")
    return problems


def test_every_import_follows_the_layer_rules():
    assert _violations() == []


def test_the_rule_checker_finds_a_broken_rule(tmp_path, monkeypatch):
    """The checker itself: a downstream module that imports the embedder and trl is reported, line by line."""
    fake = tmp_path / "reaemb_trl"
    (fake / "downstream").mkdir(parents=True)
    (fake / "downstream" / "bad.py").write_text("import trl\n\n\ndef f():\n    from ..embedder import x\n"
                                                "    from .. import testing\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    problems = _violations()
    assert problems == [
        "reaemb_trl/downstream/bad.py:1 imports trl: the downstream layer must not import trl",
        "reaemb_trl/downstream/bad.py:5 imports reaemb_trl.embedder: the downstream layer may import only "
        "['data', 'errors', 'io_utils', 'validation']",
        "reaemb_trl/downstream/bad.py:6 imports reaemb_trl.testing: `testing` is for tests and benchmarks only",
    ]


@pytest.mark.parametrize("layer", sorted(BANNED_LIBRARIES))
def test_importing_a_light_layer_loads_no_banned_library(layer):
    """What an import really loads, through every module it pulls in (the static check sees direct imports only)."""
    banned = tuple(sorted(BANNED_LIBRARIES[layer]))
    probe = (f"import sys, reaemb_trl.{layer}\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({banned!r})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_top_level_name_resolves_to_its_library_object():
    import reaemb_trl
    from reaemb_trl.crrl.run import run as crrl_run
    from reaemb_trl.lrcl.run import run as lrcl_run

    for name in reaemb_trl.__all__:
        assert getattr(reaemb_trl, name) is not None, name
    assert reaemb_trl.run_lrcl is lrcl_run and reaemb_trl.run_crrl is crrl_run
