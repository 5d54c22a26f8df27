"""Rule-based filtering: ``run(records, rules) -> StageResult``."""
from .engine import DEFAULT_RULES, load_rules, run

__all__ = ["DEFAULT_RULES", "load_rules", "run"]
