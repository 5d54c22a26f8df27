"""``curate score``: annotate records with a jury's scores; ``min_score`` turns them into rejections.

Each judge sees the rubric rendered for the record; answers are cached by (model, prompt,
parameters) so a rerun replays without calls. Records get ``score`` (the aggregate over the
judges that answered), ``scores`` (one value per judge, null where it failed) and
``score_reasons`` (the judge's reason, or ``error: KIND``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import ConfigError
from ..stage import StageResult, base_stats, split
from ..stages import Stage
from .jury import Jury, load_jury, warnings_for

SCORE_COLUMNS = ("score", "scores", "score_reasons")


class ScoreConfig(BaseModel):
    """`curate score`'s options (a pipeline's ``score:`` step)."""
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    jury: str | Path | Jury = Field(description="Jury YAML (judges, rubric, scale, ...).",
                                    json_schema_extra={"cli": {"path": True, "type": "str"}})
    min_score: float | None = Field(None, description="Reject records whose score is below this.")
    limit: int | None = Field(None, ge=0, description="Score only the first N records (the rest are rejected as "
                              "not scored).")
    cache: str | None = Field(None, description="Judge cache file (overrides the jury's 'cache').")

    @field_validator("min_score")
    @classmethod
    def _a_number(cls, v):
        if v is not None and math.isnan(v):  # no score is below nan: a threshold that never fires
            raise ValueError("is nan: give a number")
        return v

    def load(self) -> Jury:
        jury = self.jury if isinstance(self.jury, Jury) else load_jury(self.jury)
        return jury.model_copy(update={"cache": self.cache}) if self.cache else jury


class ScoreStage(Stage):
    name = "score"
    options = ScoreConfig
    stateful = True  # Ray: actors keep local judge models loaded between blocks

    def prepare(self, options: ScoreConfig, **_) -> ScoreConfig:
        return options.model_copy(update={"jury": options.load()})  # a bad jury file fails before any work

    def files(self, options: ScoreConfig, config: ScoreConfig) -> list[Path]:
        from ..shipped import resolve

        own = [] if isinstance(options.jury, Jury) else [resolve(Path(options.jury))]
        return own + config.load().files()

    def recorded(self, options: ScoreConfig) -> dict:
        return options.model_dump(exclude={"cache"})

    def run(self, records, config):
        return run(records, config)

    def run_block(self, records, config, context, state, offset):
        return run(records, config, raw_latencies=True, offset=offset)

    def gpus(self, config) -> int:
        return int(any(j.backend != "openai" for j in config.load().judges))

    def merge(self, blocks, records, config):
        jury = config.load()
        acct = merge_accounts([s["judges"] for s in blocks.stats])
        summ = summary(blocks.in_order(), blocks.kept, blocks.rejected, jury, config, acct,
                       scored_rows(config, records.height))
        return StageResult(blocks.kept, blocks.rejected, summ)


STAGE = ScoreStage()


def _prompts(records: pl.DataFrame, jury: Jury) -> dict[str, list[str]]:
    from .rubric import render_prompts

    messages = records["messages"].to_list()
    modes = sorted({j.mode for j in jury.judges})
    return {m: render_prompts(messages, jury.rubric_text(), jury.rubric, jury.scale, m, jury.max_chars) for m in modes}


def _keys(prompts: dict[str, list[str]], jury: Jury) -> tuple[list[list[str]], list[list[str]]]:
    """Per judge, each record's cache key, and its key as written before the scale was in it."""
    from .cache import cache_key, judge_params

    keys = [[cache_key(j.model, p, judge_params(j, jury)) for p in prompts[j.mode]] for j in jury.judges]
    legacy = [[cache_key(j.model, p, j.params()) for p in prompts[j.mode]] for j in jury.judges]
    return keys, legacy


def _replay(cache, ji: int, jury: Jury, keys, legacy) -> dict[str, tuple[float, str]]:
    from .jury import judge_secrets
    from .parse import clean_reason

    judge = jury.judges[ji]
    secrets = judge_secrets(judge)
    return {k: (s, clean_reason(r, secrets)) for k, (s, r) in cache.replay(judge, jury, keys[ji], legacy[ji]).items()}


def _new_accounts(records: pl.DataFrame, jury: Jury) -> dict:
    return {j.name: {"backend": j.backend, "model": j.model, "mode": j.mode, "records": records.height, "calls": 0,
                     "cache_hits": 0, "scored": 0, "failed": 0, "failures": {}, "retries": 0,
                     "tokens_in": 0, "tokens_out": 0, "_lat": []} for j in jury.judges}


def _from_cache(cache, jury: Jury, prompts, keys, legacy, verdicts, acct):
    """Fill ``verdicts`` from the cache; the calls left to make: remote (judge, prompt) jobs
    with their (judge, key, rows) slots, and per local judge its [(key, rows)]."""
    from .remote import Verdict

    remote_jobs, remote_slots, local_work = [], [], {}
    for ji, judge in enumerate(jury.judges):
        hits = _replay(cache, ji, jury, keys, legacy)
        todo: dict[str, list[int]] = {}
        for row, key in enumerate(keys[ji]):
            if key in hits:
                verdicts[ji][row] = Verdict(score=hits[key][0], reason=hits[key][1])
                acct[judge.name]["cache_hits"] += 1
            else:
                todo.setdefault(key, []).append(row)  # the same prompt twice is asked once
        if judge.backend == "openai":
            for key, rows in todo.items():
                remote_jobs.append((ji, prompts[judge.mode][rows[0]]))
                remote_slots.append((ji, key, rows))
        elif todo:
            local_work[ji] = list(todo.items())
    return remote_jobs, remote_slots, local_work


def _ask(jury: Jury, prompts, remote_jobs, remote_slots, local_work, record) -> None:
    """Send what the cache did not have: remote judges concurrently, local ones in threads."""
    import asyncio

    from .remote import score_remote

    def run_local(ji: int, work: list) -> list:
        from .local import LocalJudge

        judge = LocalJudge(jury.judges[ji], jury)
        return judge.score([prompts[jury.judges[ji].mode][rows[0]] for _, rows in work])

    async def everything():
        local_tasks = {ji: asyncio.ensure_future(asyncio.to_thread(run_local, ji, work))
                       for ji, work in local_work.items()}
        remote_judges = {ji: jury.judges[ji] for ji, _ in remote_jobs}
        try:
            await score_remote(remote_jobs, remote_judges, jury,
                               lambda i, v: record(remote_slots[i][0], remote_slots[i][1], remote_slots[i][2], v))
        finally:
            done = await asyncio.gather(*local_tasks.values(), return_exceptions=True)
        for ji, result in zip(local_tasks, done):
            if isinstance(result, BaseException):
                raise result
            for (key, rows), v in zip(local_work[ji], result):
                record(ji, key, rows, v)

    if remote_jobs or local_work:
        asyncio.run(everything())


def judge_all(records: pl.DataFrame, jury: Jury, raw_latencies: bool = False) -> tuple[list[list], dict]:
    """Every judge's verdict for every record (cache first), and per-judge accounting."""
    from ..progress import progress
    from .cache import JudgeCache

    prompts = _prompts(records, jury)
    keys, legacy = _keys(prompts, jury)
    cache = JudgeCache(jury.cache)
    verdicts: list[list] = [[None] * records.height for _ in jury.judges]
    acct = _new_accounts(records, jury)
    try:
        remote_jobs, remote_slots, local_work = _from_cache(cache, jury, prompts, keys, legacy, verdicts, acct)

        def record(ji: int, key: str, rows: list[int], v) -> None:
            bar.update(1)
            judge = jury.judges[ji]
            a = acct[judge.name]
            a["calls"] += len(v.latencies)
            a["retries"] += v.retries
            a["tokens_in"] += v.tokens_in
            a["tokens_out"] += v.tokens_out
            a["_lat"].extend(v.latencies)
            if v.failure is None:
                cache.put(key, judge.model, {"score": v.score, "reason": v.reason})
            for row in rows:
                verdicts[ji][row] = v

        # a remote jury answers a few calls a second: thousands of records are minutes of waiting
        with progress(len(remote_jobs) + sum(map(len, local_work.values())), "judging", unit="calls") as bar:
            _ask(jury, prompts, remote_jobs, remote_slots, local_work, record)
    finally:
        cache.close()
    _count_verdicts(jury, verdicts, acct, raw_latencies)
    return verdicts, acct


def _count_verdicts(jury: Jury, verdicts, acct: dict, raw_latencies: bool) -> None:
    for ji, judge in enumerate(jury.judges):
        a = acct[judge.name]
        for v in verdicts[ji]:
            if v.failure is None:
                a["scored"] += 1
            else:
                a["failed"] += 1
                a["failures"][v.failure] = a["failures"].get(v.failure, 0) + 1
        a["failures"] = dict(sorted(a["failures"].items()))
        if not raw_latencies:  # raw: the Ray engine merges batches' accounts, then takes percentiles
            a["latency_s"] = _percentiles(a.pop("_lat"))


def merge_accounts(parts: list[dict]) -> dict:
    """One judge account from the raw accounts (``raw_latencies``) of several batches."""
    out: dict = {}
    for part in parts:
        for name, a in part.items():
            m = out.setdefault(name, {**a, "records": 0, "calls": 0, "cache_hits": 0, "scored": 0, "failed": 0,
                                      "failures": {}, "retries": 0, "tokens_in": 0, "tokens_out": 0, "_lat": []})
            for k in ("records", "calls", "cache_hits", "scored", "failed", "retries", "tokens_in", "tokens_out"):
                m[k] += a[k]
            m["_lat"] = m["_lat"] + a["_lat"]
            for f, c in a["failures"].items():
                m["failures"][f] = m["failures"].get(f, 0) + c
    for m in out.values():
        m["failures"] = dict(sorted(m["failures"].items()))
        m["latency_s"] = _percentiles(m.pop("_lat"))
    return out


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None}
    import numpy as np

    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 4), "p95": round(float(p95), 4)}


def run(records: pl.DataFrame, config: ScoreConfig, raw_latencies: bool = False, offset: int = 0) -> StageResult:
    """``offset``: the position of ``records``' first row in the whole input (the Ray engine
    scores blocks), so ``limit`` counts from the start of the input."""
    jury = config.load()
    records = records.drop([c for c in SCORE_COLUMNS if c in records.columns])
    limit = scored_rows(config, records.height, offset)
    head = records.head(limit)
    verdicts, acct = judge_all(head, jury, raw_latencies) if limit else ([[] for _ in jury.judges], {})
    names = [j.name for j in jury.judges]

    scores, per_judge, reasons, rule, why = [], [], [], [], []
    for row in range(records.height):
        if row >= limit:
            scores.append(None), per_judge.append(None), reasons.append(None)
            rule.append("score.not_scored")
            why.append(f"beyond --limit {config.limit}: not sent to the jury")
            continue
        vs = [verdicts[ji][row] for ji in range(len(names))]
        s = _verdict_of_jury(vs, jury)
        per_judge.append({n: (v.score if v.failure is None else None) for n, v in zip(names, vs)})
        reasons.append({n: (v.reason if v.failure is None else f"error: {v.failure}") for n, v in zip(names, vs)})
        scores.append(s)
        if s is None:
            failed = ", ".join(f"{n}: {v.failure}" for n, v in zip(names, vs) if v.failure)
            rule.append("score.no_quorum")
            why.append(f"{sum(v.failure is None for v in vs)} of {len(names)} judges answered, "
                       f"quorum {jury.quorum} ({failed})")
            continue
        if config.min_score is not None and s < config.min_score:
            each = ", ".join(f"{n} {v.score:g}" for n, v in zip(names, vs) if v.failure is None)
            rule.append("score.below_threshold")
            why.append(f"score {s:g} < {config.min_score:g} ({jury.aggregate} of {each})")
        else:
            rule.append(None)
            why.append(None)

    struct_f = pl.Struct({n: pl.Float64 for n in names})
    struct_s = pl.Struct({n: pl.String for n in names})
    annotated = records.with_columns(
        pl.Series("score", scores, pl.Float64),
        pl.Series("scores", per_judge, struct_f),
        pl.Series("score_reasons", reasons, struct_s),
    )
    kept, rejected = split(annotated, "score", pl.Series(rule, dtype=pl.String), pl.Series(why, dtype=pl.String))

    return StageResult(kept, rejected, summary(annotated, kept, rejected, jury, config, acct, limit))


def scored_rows(config: ScoreConfig, height: int, offset: int = 0) -> int:
    """How many leading rows of ``height`` rows, starting at ``offset`` in the input, ``--limit`` scores."""
    return height if config.limit is None else max(0, min(config.limit - offset, height))


def summary(annotated: pl.DataFrame, kept: pl.DataFrame, rejected: pl.DataFrame, jury: Jury,
            config: ScoreConfig, acct: dict, limit: int) -> dict:
    """The stage's stats from its annotated table (input order): shared by the engines, so
    a table assembled from parallel batches gives the same histogram and agreement."""
    from .agreement import krippendorff_alpha_ordinal, pairwise

    names = [j.name for j in jury.judges]
    head = annotated.head(limit)
    columns = {n: head["scores"].struct.field(n).to_list() for n in names}
    done = annotated["score"].drop_nulls().to_list()
    return {
        **base_stats("score", kept, rejected),
        "jury": {"fingerprint": jury.fingerprint(), "rubric": jury.rubric, "scale": list(jury.scale),
                 "aggregate": jury.aggregate, "quorum": jury.quorum, "min_score": config.min_score},
        "judges": acct,
        "histogram": _histogram(done, jury.scale),
        "agreement": {"pairs": pairwise(columns),
                      "krippendorff_alpha_ordinal": _round(krippendorff_alpha_ordinal(
                          [[columns[n][r] for n in names] for r in range(limit)])) if len(names) > 1 else None},
        "warnings": warnings_for(jury),
    }


def _verdict_of_jury(verdicts: list, jury: Jury) -> float | None:
    """The aggregate of the judges that answered, or None below quorum."""
    from .agreement import aggregate

    answered = [v.score for v in verdicts if v.failure is None]
    return round(aggregate(answered, jury.aggregate), 4) if len(answered) >= jury.quorum else None


def _round(x):
    return None if x is None else round(x, 4)


def _histogram(values: list[float], scale: tuple[int, int]) -> dict[str, int]:
    """Counts in half-point bins from the bottom of the scale to the top."""
    lo, hi = scale
    bins = {f"{lo + k / 2:.1f}": 0 for k in range(2 * (hi - lo) + 1)}
    for v in values:
        bins[f"{round(v * 2) / 2:.1f}"] += 1
    return bins


def plan(records: pl.DataFrame, config: ScoreConfig) -> dict:
    """What a run would do, without calling anything: per judge the calls still to make,
    the answers already cached and an estimate of the input tokens."""
    from .cache import JudgeCache

    jury = config.load()
    head = records.head(records.height if config.limit is None else config.limit)
    prompts = _prompts(head, jury)
    keys, legacy = _keys(prompts, jury)
    out = {"records": head.height, "judges": {}, "warnings": warnings_for(jury)}
    cache = JudgeCache(jury.cache) if Path(jury.cache).exists() else None
    try:
        for ji, judge in enumerate(jury.judges):
            hits = _replay(cache, ji, jury, keys, legacy) if cache else {}
            todo = {k: row for row, k in enumerate(keys[ji]) if k not in hits}
            texts = [prompts[judge.mode][row] for row in todo.values()]
            if judge.backend == "local":
                from ..models import tokenizer_folder
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(str(tokenizer_folder(judge.model)))
                tokens, exact = sum(len(tok(t)["input_ids"]) for t in texts), True
            else:
                tokens, exact = sum(len(t) for t in texts) // 4, False  # ~4 characters a token in English
            out["judges"][judge.name] = {
                "backend": judge.backend, "model": judge.model, "calls": len(todo),
                "cached": sum(k in hits for k in keys[ji]), "tokens_in": tokens, "tokens_exact": exact,
                "max_tokens_out": len(todo) * (judge.params().get("max_tokens") or 0)}
    finally:
        if cache:
            cache.close()
    return out


def calibrate(records: pl.DataFrame, jury: Jury, label_field: str = "human_score") -> dict:
    """Score labelled records (cache first) and compare each judge and the jury with the labels."""
    from .agreement import versus_labels

    labels, keep = [], []
    for i, meta in enumerate(records["meta"].to_list()):
        value = json.loads(meta or "{}").get(label_field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            labels.append(float(value))
            keep.append(i)
    if not keep:
        raise ConfigError(f"no record has a numeric '{label_field}' field to calibrate against")
    lo, hi = jury.scale
    outside = [x for x in labels if not lo <= x <= hi]
    if outside:
        raise ConfigError(f"label {outside[0]:g} is outside the jury's scale {lo}..{hi}")
    labelled = records[keep]
    verdicts, acct = judge_all(labelled, jury)
    out = {"records": labelled.height, "unlabelled": records.height - labelled.height, "judges": {}}
    for ji, judge in enumerate(jury.judges):
        pred = [v.score if v.failure is None else None for v in verdicts[ji]]
        out["judges"][judge.name] = versus_labels(pred, labels, jury.scale)
    jury_pred = [_verdict_of_jury([v[r] for v in verdicts], jury) for r in range(labelled.height)]
    out["jury"] = versus_labels(jury_pred, labels, jury.scale)
    out["accounting"] = acct
    return out
