"""The pipeline file: inputs, an ordered list of steps (each one stage with its command's
options), and an output folder. Paths are relative to the folder ``curate run`` starts in."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import load_config
from ..dedup import DEFAULT_THRESHOLD, DedupConfig
from ..format import FormatConfig
from ..formats import FORMATS

KINDS = ("filter", "dedup", "score", "format")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(Strict):
    path: str
    format: str | None = None          # as `--format`: forced input format
    map: dict[str, str] = Field(default_factory=dict)  # as `--map FIELD=COLUMN`

    @model_validator(mode="after")
    def _check(self):
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format '{self.format}' is not one of {', '.join(FORMATS)}")
        return self


class FilterOptions(Strict):
    rules: str | list[str] | None = None  # rule set file(s); default rules/default.yaml

    def rule_files(self) -> list[str | None]:
        if self.rules is None:
            return [None]
        return [self.rules] if isinstance(self.rules, str) else list(self.rules)


class DedupOptions(Strict):
    """`curate dedup`'s options: ``method`` one name or a list, ``threshold`` a number or per method."""
    method: str | list[str] = "exact"
    threshold: float | dict[str, float] | None = None
    on: Literal["conversation", "prompt", "response"] = "conversation"
    strip_punct: bool = False
    num_perm: int = 128
    ngram: int = 5
    shingle: Literal["word", "char"] = "word"
    bands: int | None = None
    rows: int | None = None
    verify: Literal["estimate", "exact"] = "estimate"
    model: str | None = None
    batch_size: int = 8
    encoder: Literal["torch", "onnx", "onnx-int8", "openvino"] = "torch"  # semantic: sentence-transformers or ONNX
    cache_dir: str | None = None
    embeddings: str | None = None  # an embedding store file the step reads and adds to
    check: Literal["agree", "off"] = "agree"  # semantic: numbers, links, answer and response must agree
    boilerplate: bool = True  # semantic: lines many records share are left out of what is embedded
    conflicts: Literal["mark", "reject"] = "mark"  # semantic: same prompt, disagreeing answers
    borderline: int = 3  # semantic: pairs kept in stats.json on each side of the threshold

    @model_validator(mode="after")
    def _check(self):
        self.config()  # the stage's own checks, reported against this step
        return self

    def config(self) -> DedupConfig:
        methods = [self.method] if isinstance(self.method, str) else list(self.method)
        if isinstance(self.threshold, (int, float)):
            threshold = {m: float(self.threshold) for m in methods if m in DEFAULT_THRESHOLD}
        else:
            threshold = dict(self.threshold or {})
        body = self.model_dump(exclude={"method", "threshold"})
        return DedupConfig(methods=methods, threshold=threshold, **body)


class ScoreOptions(Strict):
    jury: str
    min_score: float | None = None
    limit: int | None = Field(None, ge=0)
    cache: str | None = None


class Step(Strict):
    """One stage: exactly one of the keys below, holding that command's options."""
    filter: FilterOptions | None = None
    dedup: DedupOptions | None = None
    score: ScoreOptions | None = None
    format: FormatConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_options(cls, data):
        # `- dedup:` with nothing after it means the defaults
        if isinstance(data, dict) and len(data) == 1:
            (k, v), = data.items()
            if v is None and k in ("filter", "dedup"):
                return {k: {}}
        return data

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step is exactly one of {', '.join(KINDS)}" + (f"; got {', '.join(given)}" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def options(self):
        return getattr(self, self.kind)


class Pipeline(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    inputs: list[InputSpec] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
    output: str
    # where steps run; not part of any cache key: both engines write the same bytes
    engine: Literal["local", "ray"] = "local"

    def step_names(self) -> list[str]:
        return [f"{i:02d}-{s.kind}" for i, s in enumerate(self.steps, 1)]


def load_pipeline(path) -> Pipeline:
    return load_config(Path(path), Pipeline)


def lock_path(pipeline_path) -> Path:
    """``pipelines/NAME.yaml`` -> ``pipelines/NAME.lock``."""
    return Path(pipeline_path).with_suffix(".lock")
