"""Judges behind OpenAI-compatible endpoints: async, a bounded number of requests in flight,
retries with backoff and jitter that honour Retry-After, failures counted by kind."""
from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass

from ..config import ConfigError
from .jury import Judge, Jury, api_key
from .parse import BadAnswer, expected_digit, parse_json_answer


@dataclass
class Verdict:
    score: float | None = None
    reason: str | None = None
    failure: str | None = None     # kind, when no score came back
    tokens_in: int = 0
    tokens_out: int = 0
    latencies: tuple[float, ...] = ()  # one per request sent
    retries: int = 0


class JudgeFatal(ConfigError):
    """A problem no retry fixes (a refused key, an unknown model): stops the whole run."""


def _retry_after(exc) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:  # an HTTP date
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class RemoteJudge:
    def __init__(self, judge: Judge, jury: Jury):
        import openai

        self.judge, self.jury = judge, jury
        self._key = api_key(judge)
        # the client's own retries are off: ours count failures by kind and honour Retry-After
        http = _http_client(openai)
        self.client = openai.AsyncOpenAI(base_url=judge.base_url, api_key=self._key, max_retries=0,
                                         timeout=jury.timeout_s, http_client=http)
        self.json_format = judge.json_mode != "off"   # auto starts with it and drops it if refused
        self.json_confirmed = False                   # a JSON-mode request has succeeded once
        self._rng = random.Random(0)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key and len(self._key) > 3 else text

    async def close(self) -> None:
        await self.client.close()

    def _request(self, prompt: str) -> dict:
        j = self.judge
        body = dict(model=j.model, messages=[{"role": "user", "content": prompt}], temperature=j.temperature)
        if j.mode == "logprobs":
            body.update(max_tokens=1, logprobs=True, top_logprobs=20)
        else:
            body.update(max_tokens=j.max_tokens)
            if self.json_format:
                body["response_format"] = {"type": "json_object"}
        return body

    async def _post(self, body: dict) -> dict:
        # The client's own post, not chat.completions.create: the same auth, URL, timeout
        # and error types, without its typed-parameter transform and response models
        # (0.3 ms of CPU a request between them, a third of the client's time, which is
        # what bounds throughput at high concurrency). The answer is the server's JSON.
        return await self.client.post("/chat/completions", cast_to=object, body=body)

    def _answer(self, resp) -> tuple[float, str]:
        choices = resp.get("choices") if isinstance(resp, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is None:
            raise BadAnswer("parse_error", "no choices in the response")
        if self.judge.mode == "logprobs":
            content = (choice.get("logprobs") or {}).get("content")
            if not content or not isinstance(content, list):
                raise BadAnswer("no_logprobs", "the server returned no logprobs")
            try:
                first = content[0]
                top = {t["token"]: float(t["logprob"]) for t in (first.get("top_logprobs") or [])}
                top.setdefault(first["token"], float(first["logprob"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise BadAnswer("parse_error", "malformed logprobs in the response") from None
            return expected_digit(top, self.jury.scale)
        content = (choice.get("message") or {}).get("content")
        if content is not None and not isinstance(content, str):
            raise BadAnswer("parse_error", "the answer is not text")
        return parse_json_answer(content, self.jury.scale)

    def _delay(self, attempt: int) -> float:
        return min(30.0, self.jury.backoff_s * 2 ** attempt) * (0.5 + self._rng.random())

    async def score(self, prompt: str, gate: asyncio.Semaphore) -> Verdict:
        import openai

        v, latencies = Verdict(), []
        attempt = 0
        while True:
            kind, wait = None, None
            try:
                async with gate:
                    t0 = time.perf_counter()
                    try:
                        resp = await self._post(self._request(prompt))
                    finally:  # every request sent counts, answered or not
                        latencies.append(time.perf_counter() - t0)
                usage = resp.get("usage") if isinstance(resp, dict) else None
                if isinstance(usage, dict):
                    v.tokens_in += usage.get("prompt_tokens") or 0
                    v.tokens_out += usage.get("completion_tokens") or 0
                try:
                    v.score, v.reason = self._answer(resp)
                    v.failure = None
                    self.json_confirmed = self.json_confirmed or self.json_format
                    break
                except BadAnswer as e:
                    kind = e.kind
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (401, 403):
                    raise JudgeFatal(f"judge {self.judge.name}: {self.judge.base_url} refused the request (HTTP {status}); "
                                     f"check the key in ${self.judge.api_key_env or '(no api_key_env set)'}") from None
                if status == 404:
                    raise JudgeFatal(f"judge {self.judge.name}: HTTP 404 from {self.judge.base_url} for model "
                                     f"'{self.judge.model}': {self._scrub(_message(e))}") from None
                if status in (400, 422) and self.json_format and self.judge.json_mode == "auto" \
                        and not self.json_confirmed:
                    self.json_format = False  # the server does not do JSON mode: ask in the prompt only
                    continue
                if status == 429:
                    kind, wait = "rate_limited", _retry_after(e)
                elif status >= 500:
                    kind, wait = "server_error", _retry_after(e)
                elif status == 408:
                    kind = "timeout"
                else:
                    v.failure = f"http_{status}"  # this request is wrong; sending it again will not help
                    break
            except ValueError:  # a 200 whose JSON body does not parse (cut off by a proxy)
                kind = "parse_error"
            except openai.APITimeoutError:
                kind = "timeout"
            except openai.APIConnectionError:
                kind = "connection"
            v.failure = kind
            if attempt >= self.jury.retries:
                break
            attempt += 1
            v.retries += 1
            await asyncio.sleep(min(wait, 60.0) if wait is not None else self._delay(attempt - 1))
        v.latencies = tuple(latencies)
        if v.failure:
            v.score = v.reason = None
        return v


def _http_client(openai):
    """aiohttp under the openai client where installed (openai[aiohttp]): about 40% less CPU
    a request than the default httpx transport, which is what bounds throughput at high
    concurrency."""
    try:
        return openai.DefaultAioHttpClient()
    except (ImportError, RuntimeError):  # the client raises RuntimeError when aiohttp is missing
        return openai.DefaultAsyncHttpxClient()


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        msg = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if msg:
            return str(msg)[:200]
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


async def score_remote(jobs: list[tuple[int, str]], judges: dict[int, Judge], jury: Jury,
                       on_verdict) -> None:
    """Run ``jobs`` ((judge index, prompt)) with at most ``jury.concurrency`` requests in flight;
    ``on_verdict(job_index, verdict)`` is called as each finishes."""
    if not jobs:
        return
    clients = {i: RemoteJudge(j, jury) for i, j in judges.items()}
    gate = asyncio.Semaphore(jury.concurrency)
    queue: asyncio.Queue = asyncio.Queue()
    for n, job in enumerate(jobs):
        queue.put_nowait((n, job))

    async def worker():
        while True:
            try:
                n, (ji, prompt) = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            on_verdict(n, await clients[ji].score(prompt, gate))

    # retries sleep outside the gate, so a few more workers than slots keep the pipe full
    workers = [asyncio.ensure_future(worker()) for _ in range(min(len(jobs), jury.concurrency * 2))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        for c in clients.values():
            await c.close()
