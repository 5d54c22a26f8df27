"""Every YAML file shipped in the repo validates."""
from pathlib import Path

import pytest

from curate.api import validate_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in REPO.rglob("*.y*ml")
                 if p.suffix in (".yaml", ".yml") and not any(part.startswith(".") or part in ("build",) for part in p.relative_to(REPO).parts))


def test_there_are_shipped_files():
    assert any(p.name == "default.yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO)) for p in SHIPPED])
def test_validates(path):
    validate_file(path)
