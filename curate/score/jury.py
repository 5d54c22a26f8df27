"""The jury file: judges, rubric, scale, aggregation, retry and cache policy."""
from __future__ import annotations

import hashlib
import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..config import ConfigError, load_config


class Judge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    backend: Literal["openai", "local"]
    model: str
    # json: the judge answers {"score": N, "reason": "..."}; logprobs: the score is the expectation
    # over the scale's digits in the next-token distribution (local judges always work this way)
    mode: Literal["json", "logprobs"] | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = Field(256, ge=1)
    json_mode: Literal["auto", "on", "off"] = "auto"  # response_format=json_object; auto drops it if refused
    batch_size: int = Field(8, ge=1)          # local: records per forward pass
    max_length: int = Field(2048, ge=64)      # local: prompt tokens kept (the end, where the question is)

    @model_validator(mode="after")
    def _backend_keys(self):
        if self.mode is None:
            self.mode = "logprobs" if self.backend == "local" else "json"
        if self.backend == "local":
            if self.mode != "logprobs":
                raise ValueError("a local judge scores from digit probabilities: mode must be logprobs")
            for key in ("base_url", "api_key_env"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' is for openai judges; a local judge runs in-process")
        elif not self.base_url:
            raise ValueError("an openai judge needs base_url (e.g. https://api.openai.com/v1)")
        else:
            url = urlparse(self.base_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError("base_url must be an http:// or https:// URL with a host")
            if url.username is not None or url.password is not None:  # the message never repeats it
                raise ValueError("base_url must not carry a user or password: put the key in the "
                                 "variable named by api_key_env")
        return self

    def params(self) -> dict:
        """What shapes the answer besides model and prompt: part of the cache key."""
        p = {"backend": self.backend, "mode": self.mode}
        if self.backend == "openai":
            p.update(temperature=self.temperature, max_tokens=self.max_tokens if self.mode == "json" else 1)
        else:
            p.update(max_length=self.max_length)
        return p


class Jury(BaseModel):
    model_config = ConfigDict(extra="forbid")

    judges: list[Judge] = Field(min_length=1)
    rubric: str
    scale: tuple[int, int] = (1, 5)
    aggregate: Literal["mean", "median", "min", "majority"] = "mean"
    quorum: int = Field(1, ge=1)
    concurrency: int = Field(16, ge=1, le=4096)  # requests in flight to openai judges, all judges together
    retries: int = Field(3, ge=0, le=20)
    # a request's deadline, connecting to the last byte of its reply (finite: aiohttp rounds it to a time)
    timeout_s: float = Field(60.0, gt=0, le=86_400, allow_inf_nan=False)
    max_response_bytes: int = Field(4_000_000, ge=1024)  # a longer reply is a too_large failure
    backoff_s: float = Field(0.5, ge=0)          # first retry delay; doubles each attempt, with jitter
    max_chars: int = Field(8000, ge=100)         # per message shown to a judge; longer ones are cut in the middle
    cache: str = ".curate/cache/judges.sqlite"

    @field_validator("rubric")
    @classmethod
    def _rubric_exists(cls, v: str, info: ValidationInfo) -> str:
        path = resolve_relative(v, info.context)
        if not path.is_file():
            raise ValueError(f"rubric file {v} not found")
        return os.path.normpath(path)

    @model_validator(mode="after")
    def _check(self):
        lo, hi = self.scale
        if lo >= hi:
            raise ValueError(f"scale: [{lo}, {hi}] must go from low to high")
        names = [j.name for j in self.judges]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"judge name '{dup[0]}' is used twice")
        if self.quorum > len(self.judges):
            raise ValueError(f"quorum {self.quorum} is more than the {len(self.judges)} judges")
        if any(j.mode == "logprobs" for j in self.judges) and not (0 <= lo and hi <= 9):
            raise ValueError(f"scale [{lo}, {hi}]: logprobs judges need single-digit scores (0..9)")
        return self

    def files(self) -> list[Path]:
        """The files the jury reads besides its own (the rubric): a pipeline hashes their bytes."""
        return [Path(self.rubric)]

    def rubric_text(self) -> str:
        return Path(self.rubric).read_text(encoding="utf-8")

    def fingerprint(self) -> str:
        """Hash of everything in the jury that shapes scores (not cache/concurrency/secrets)."""
        import json

        body = self.model_dump(exclude={"cache", "concurrency", "rubric", "max_response_bytes"})
        for j in body["judges"]:
            j.pop("api_key_env", None)
        body["rubric_text"] = self.rubric_text()
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def resolve_relative(value: str, context: dict | None) -> Path:
    """A path in a config: as written when it exists from here, else beside the config file."""
    path = Path(value)
    if path.is_absolute() or path.exists() or not context or "path" not in context:
        return path
    beside = Path(context["path"]).parent / path
    return beside if beside.exists() else path


def load_jury(path) -> Jury:
    return load_config(path, Jury)


def api_key(judge: Judge) -> str:
    """The key from the judge's environment variable; never stored or printed."""
    if judge.api_key_env is None:
        return "not-needed"  # local servers (vLLM, Ollama, llama.cpp) accept any key
    value = os.environ.get(judge.api_key_env)
    if not value:
        raise ConfigError(f"judge {judge.name}: environment variable {judge.api_key_env} is not set (api_key_env)")
    if any(not 0x21 <= ord(c) <= 0x7E for c in value):
        # a header cannot carry it (aiohttp's error would print it); the key itself is never shown
        raise ConfigError(f"judge {judge.name}: the value of {judge.api_key_env} holds a character an HTTP header "
                          "cannot carry (white space such as a CR or newline from a key file, or a non-ASCII "
                          "character): set the bare key")
    return value


def judge_secrets(judge: Judge) -> list[str]:
    """What to scrub from a judge's texts: its key, where it has one and it is set."""
    value = os.environ.get(judge.api_key_env) if judge.api_key_env else None
    return [value] if value else []


def warnings_for(jury: Jury) -> list[str]:
    out = []
    for j in jury.judges:
        if j.backend != "openai":
            continue
        url = urlparse(j.base_url)
        if url.scheme == "http" and not _is_loopback(url.hostname or ""):
            from .scrub import scrub  # a password in the URL is not printed

            out.append(scrub(f"judge {j.name}: {j.base_url} is plain http to another machine; prompts"
                             + (" and the API key" if j.api_key_env else "") + " travel unencrypted"))
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
