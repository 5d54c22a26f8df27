"""Rule-based filtering: ``run(records, rules) -> StageResult``."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..stages import Stage

__all__ = ["DEFAULT_RULES", "FilterConfig", "load_rule_sets", "load_rules", "run"]
_APPLY = ("DEFAULT_RULES", "load_rule_sets", "load_rules", "run")


def __getattr__(name: str):
    # the rules (pydantic models, regexes, YAML) load when first used, not with the package:
    # `curate dedup` imports curate.filter.fields for its conversation text, and loading the
    # rules with it cost ~0.03 CPU-s a command (docs/speed.md "Start-up, session 5")
    if name in _APPLY:
        from . import apply

        return getattr(apply, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FilterConfig(BaseModel):
    """`curate filter`'s options (a pipeline's ``filter:`` step)."""
    model_config = ConfigDict(extra="forbid")
    rules: str | list[str] | None = Field(
        None, description="Rule set YAML (repeatable; default rules/default.yaml).",
        json_schema_extra={"cli": {"multiple": True, "dest": "rule_files", "path": True}})

    def rule_files(self) -> list[str | None]:
        if self.rules is None:
            return [None]
        return [self.rules] if isinstance(self.rules, str) else list(self.rules)


class FilterStage(Stage):
    """Apply rule sets to the records."""
    name = "filter"
    options = FilterConfig

    def prepare(self, options: FilterConfig, **_):
        from .apply import load_rule_sets

        return load_rule_sets(options.rule_files())

    def files(self, options: FilterConfig, config) -> list[Path]:
        from ..shipped import resolve
        from .apply import DEFAULT_RULES

        # the rule set files as the reader found them (a `rules/...` path not here is the shipped one)
        return [resolve(Path(p or DEFAULT_RULES)) for p in options.rule_files()] + config.files()

    def run(self, records, config):
        from .apply import run

        return run(records, config)

    def merge(self, blocks, records, config):
        from ..stage import StageResult
        from .apply import merge_stats

        return StageResult(blocks.kept, blocks.rejected, merge_stats(blocks.stats, blocks.t0))


STAGE = FilterStage()
