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


ACCELERATE = sorted(p for p in SHIPPED if p.parent.name == "accelerate")


@pytest.mark.parametrize("path", ACCELERATE, ids=[p.name for p in ACCELERATE])
@pytest.mark.parametrize("edit, named", [
    pytest.param(lambda d: d.update(mixed_precison="bf16"), "mixed_precison", id="misspelt-key"),
    pytest.param(lambda d: d.update(mixed_precision="bf32"), "bf32", id="value-not-a-choice"),
    pytest.param(lambda d: d.update(num_processes="eight"), "num_processes", id="wrong-type"),
    pytest.param(lambda d: d.update(use_cpu="maybe"), "use_cpu", id="not-a-flag"),  # a key launch calls --cpu
    pytest.param(lambda d: d.update(distributed_type="FSPD"), "FSPD", id="unknown-distributed-type"),
    pytest.param(lambda d: d[next(k for k in d if k.endswith("_config"))].update(auto_wrap_polcy="x"),
                 "auto_wrap_polcy", id="misspelt-nested-key"),
])
def test_a_broken_accelerate_config_is_refused(path, edit, named, tmp_path):
    """The shipped accelerate configs are validated, not waved through: each breakage fails, naming it."""
    import yaml

    from curate.config import ConfigError

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    broken = tmp_path / path.name
    broken.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=named):
        validate_file(broken)
