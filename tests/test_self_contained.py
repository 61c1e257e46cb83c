"""The project explains itself: code, recipes and docs cite only documents inside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"\bDESIGN(\.md| section)")


def test_no_citation_of_documents_outside_the_repository():
    files = [*ROOT.glob("reaemb_trl/**/*.py"), *ROOT.glob("recipes/**/*.yaml"), *ROOT.glob("docs/*.md"),
             *ROOT.glob("benchmarks/*.py"), ROOT / "README.md", ROOT / "ARCHITECTURE.md"]
    assert len(files) > 40
    offending = [str(f.relative_to(ROOT)) for f in files if CITED.search(f.read_text(encoding="utf-8"))]
    assert offending == []
