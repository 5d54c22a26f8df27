"""The pipeline file: inputs, an ordered list of steps (each one stage with its command's
options), and an output folder. Paths are relative to the folder ``curate run`` starts in."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from .. import stages
from ..compression import DEFAULT, parse
from ..config import ConfigError, load_config
from ..layouts.read import FORMATS


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


class Step(Strict):
    """One stage: exactly one key, a registered stage kind (curate.stages), holding that
    command's options. :func:`step_model` makes the model with one key per registered kind."""

    @classmethod
    def model_validate(cls, obj, **kw):
        if cls is Step:  # the base: validate against the stages registered now
            return step_model().model_validate(obj, **kw)
        return super().model_validate(obj, **kw)

    @model_validator(mode="before")
    @classmethod
    def _empty_options(cls, data):
        # `- dedup:` with nothing after it means the defaults
        if isinstance(data, dict) and len(data) == 1:
            (k, v), = data.items()
            if v is None and k in cls.model_fields:
                return {k: {}}
        return data

    @model_validator(mode="after")
    def _one(self):
        kinds = list(type(self).model_fields)
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step is exactly one of {', '.join(kinds)}" + (f"; got {', '.join(given)}" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def options(self):
        return getattr(self, self.kind)


def _current() -> tuple:
    # keyed by each kind's options model too: a name registered again with another model
    # gets a new step model, not the cached one
    return tuple((k, stages.get(k).options) for k in stages.names())


@functools.lru_cache(maxsize=None)
def _models(kinds: tuple[tuple[str, type], ...]):
    steps = create_model("Step", __base__=Step,
                         **{k: (options | None, Field(None, description=_describe(k))) for k, options in kinds})
    pipeline = create_model("Pipeline", __base__=Pipeline, steps=(list[steps], Field(min_length=1)))
    return steps, pipeline


def _describe(kind: str) -> str:
    doc = (stages.get(kind).options.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else f"a {kind} step"


def step_model() -> type[Step]:
    """The step model for the stages registered now."""
    return _models(_current())[0]


def pipeline_model() -> type["Pipeline"]:
    return _models(_current())[1]


class Pipeline(Strict):
    @classmethod
    def model_validate(cls, obj, **kw):
        if cls is Pipeline:  # the base: validate against the stages registered now (as Step does)
            return pipeline_model().model_validate(obj, **kw)
        return super().model_validate(obj, **kw)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    inputs: list[InputSpec] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)  # one key per registered stage: see pipeline_model()
    output: str
    # where steps run; not part of any cache key: both engines write the same bytes
    engine: Literal["local", "ray"] = "local"
    # the codec of every step's Parquet files (curate.compression): other bytes, the same
    # content, so part of a step's cache key (its files are rewritten) but never of the lock
    compression: str = DEFAULT

    @field_validator("compression", mode="before")
    @classmethod
    def _codec(cls, value):
        return parse(value)  # its ValueError is the one-line message load_config shows

    def step_names(self) -> list[str]:
        return [f"{i:02d}-{s.kind}" for i, s in enumerate(self.steps, 1)]


def load_pipeline(path) -> Pipeline:
    if Path(path).suffix == ".lock":  # its lock would be written over it (lock_path)
        raise ConfigError(f"{path}: a pipeline file cannot end in .lock, the name of its lock file; "
                          "rename it (e.g. NAME.yaml)")
    return load_config(Path(path), pipeline_model())


def lock_path(pipeline_path) -> Path:
    """``pipelines/NAME.yaml`` -> ``pipelines/NAME.lock``."""
    return Path(pipeline_path).with_suffix(".lock")
