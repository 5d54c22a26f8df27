"""Rule-based filtering: ``run(records, rules) -> StageResult``."""
from .engine import DEFAULT_RULES, load_rule_sets, load_rules, run

__all__ = ["DEFAULT_RULES", "load_rule_sets", "load_rules", "run"]
