"""Judges behind OpenAI-compatible endpoints: async, a bounded number of requests in flight,
retries with backoff and jitter that honour Retry-After, failures counted by kind.

A reply is untrusted input: each request has a deadline (timeout_s, for the whole exchange)
and a size limit (max_response_bytes), redirects are not followed, any body of the wrong
shape is a counted failure of that request, and secrets are scrubbed from every text kept."""
from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
import zlib
from dataclasses import dataclass

from .. import jsonsafe
from ..config import ConfigError
from .jury import Judge, Jury, api_key
from .parse import BadAnswer, clean_reason, expected_digit, parse_json_answer
from .scrub import one_line, scrub


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


MAX_ERROR_BODY = 64 * 1024   # bytes of an error reply read (for its message); the rest is left unread
MAX_TOKEN_COUNT = 10 ** 9     # usage counts above this are no count


class _TooLarge(Exception):
    """The reply's body is over the jury's max_response_bytes."""


class _BadEncoding(Exception):
    """A Content-Encoding we did not offer, or a compressed body that does not inflate."""


class _Inflate:
    """Decode a body as it arrives, never producing more than ``limit`` + 1 bytes: a reply
    of a few KB that inflates to gigabytes stops at the limit (zlib's max_length), where
    httpx would inflate each chunk whole. We offer gzip and deflate only; anything else
    (br, zstd: no bounded decoder here) is a _BadEncoding."""

    def __init__(self, encoding: str, limit: int):
        enc = [e.strip().lower() for e in encoding.split(",") if e.strip() and e.strip().lower() != "identity"]
        if len(enc) > 1 or (enc and enc[0] not in ("gzip", "x-gzip", "deflate")):
            raise _BadEncoding(encoding)
        self.kind = enc[0] if enc else None
        self.limit, self.out = limit, 0
        self.z = None
        if self.kind in ("gzip", "x-gzip"):
            self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def __call__(self, chunk: bytes) -> bytes:
        if self.kind is None:
            self.out += len(chunk)
            return chunk
        if self.z is None:  # deflate: zlib-wrapped as the RFC says, or raw as some servers send
            self.z = zlib.decompressobj(zlib.MAX_WBITS)
            try:
                return self._inflate(chunk)
            except _BadEncoding:
                self.z, self.out = zlib.decompressobj(-zlib.MAX_WBITS), 0
        return self._inflate(chunk)

    def _inflate(self, chunk: bytes) -> bytes:
        parts = []
        try:
            while chunk:
                piece = self.z.decompress(chunk, self.limit + 1 - self.out + 1)
                parts.append(piece)
                self.out += len(piece)
                if self.out > self.limit:
                    break
                chunk = self.z.unconsumed_tail
        except zlib.error:
            raise _BadEncoding("the compressed body does not inflate") from None
        return b"".join(parts)

    def flush(self) -> bytes:
        if self.z is None:
            return b""
        try:
            return self.z.flush()
        except zlib.error:
            raise _BadEncoding("the compressed body does not inflate") from None


def _retry_after(headers) -> float | None:
    """Seconds the server asks us to wait (Retry-After-Ms, Retry-After as seconds or an HTTP
    date), at most 60; None when absent or not a finite, non-negative time."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            wait = _wait_s(float(ms) / 1000)
            if wait is not None:
                return wait
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return _wait_s(float(value))
    except ValueError:  # an HTTP date
        try:
            return _wait_s(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), past_ok=True)
        except (TypeError, ValueError, OverflowError, IndexError):
            return None


def _wait_s(x: float, past_ok: bool = False) -> float | None:
    if not math.isfinite(x) or (x < 0 and not past_ok):
        return None
    return min(max(0.0, x), 60.0)


class RemoteJudge:
    def __init__(self, judge: Judge, jury: Jury):
        import openai

        self.judge, self.jury = judge, jury
        self._key = api_key(judge)
        self._secrets = [self._key] if judge.api_key_env else []
        # Our own POST over the openai package's HTTP client (aiohttp where installed): the
        # whole exchange under one deadline (timeout_s), the body read up to a size limit, no
        # redirect followed, every failure counted by kind. The client's typed layer
        # (retries, response models) is not used: ours count failures and honour Retry-After.
        self.http, self.httpx = _http_client(openai, jury.timeout_s)
        self.url = judge.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json",
                        "Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
        self.json_format = judge.json_mode != "off"   # auto starts with it and drops it if refused
        self.json_confirmed = False                   # a JSON-mode request has succeeded once
        self._rng = random.Random(0)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    async def close(self) -> None:
        await self.http.aclose()

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

    async def _exchange(self, body: dict) -> tuple[int, dict, bytes]:
        """One POST: (status, headers, body). A 2xx body over max_response_bytes (decoded) is
        _TooLarge; of an error reply only the first MAX_ERROR_BODY bytes are read."""
        async with self.http.stream("POST", self.url, content=json.dumps(body).encode(), headers=self.headers) as r:
            ok = 200 <= r.status_code < 300
            limit = self.jury.max_response_bytes if ok else MAX_ERROR_BODY
            length = r.headers.get("content-length", "")
            if ok and length.isdigit() and int(length) > limit:
                raise _TooLarge
            data = bytearray()
            try:
                decode = _Inflate(r.headers.get("content-encoding", ""), limit)
                async for chunk in r.aiter_raw():  # raw: we inflate, a bounded amount at a time
                    data += decode(chunk)
                    if len(data) > limit:
                        raise _TooLarge
                data += decode.flush()
                if len(data) > limit:
                    raise _TooLarge
            except _TooLarge:
                if ok:
                    raise
                del data[limit:]  # an error reply: its start is enough for the message
            except _BadEncoding:
                if ok:
                    raise
                data = bytearray()  # an error reply keeps its status (a 401 stops the run) without its body
            return r.status_code, r.headers, bytes(data)

    async def _post(self, body: dict) -> tuple[int, dict, bytes]:
        # the deadline covers connecting, sending, waiting and reading: a server that drips
        # its reply a byte at a time never trips a per-read timeout, and would hold us for ever
        return await asyncio.wait_for(self._exchange(body), self.jury.timeout_s)

    def _answer(self, resp) -> tuple[float, str]:
        """A score and reason from the reply's JSON, or BadAnswer: any shape but the expected
        one (a message that is a string, logprobs that are not a list, a logprob above 0, ...)."""
        choices = resp.get("choices") if isinstance(resp, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is None:
            raise BadAnswer("parse_error", "no choices in the response")
        if self.judge.mode == "logprobs":
            return expected_digit(_top_logprobs(choice.get("logprobs")), self.jury.scale)
        message = choice.get("message")
        if not isinstance(message, dict):
            raise BadAnswer("parse_error", "the message is not an object")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise BadAnswer("parse_error", "the answer is not text")
        score, reason = parse_json_answer(content, self.jury.scale)
        return score, clean_reason(reason, self._secrets)

    def _delay(self, attempt: int) -> float:
        return min(30.0, self.jury.backoff_s * 2 ** attempt) * (0.5 + self._rng.random())

    async def score(self, prompt: str, gate: asyncio.Semaphore) -> Verdict:
        """The verdict on ``prompt``: the judge's score and reason, or the kind of its last
        failure after up to ``jury.retries`` more tries (each waiting as the server asked, else
        backing off) where another try can help."""
        v, latencies, attempt = Verdict(), [], 0
        while True:
            outcome = await self._attempt(prompt, gate, v, latencies)
            if outcome is None:  # JSON mode refused: asked again at once, in the prompt only
                continue
            v.failure, wait, again = outcome
            if v.failure is None or not again or attempt >= self.jury.retries:
                break
            attempt += 1
            v.retries += 1
            await asyncio.sleep(wait if wait is not None else self._delay(attempt - 1))
        v.latencies = tuple(latencies)
        if v.failure:
            v.score = v.reason = None
        return v

    async def _attempt(self, prompt: str, gate: asyncio.Semaphore, v: Verdict, latencies: list):
        """One request: (failure kind, None when ``v`` now holds the answer; seconds the server
        asked to wait, None to back off; whether another try can help), or None to send it again
        at once (the server refused JSON mode, now off)."""
        httpx = self.httpx
        try:
            async with gate:
                t0 = time.perf_counter()
                try:
                    status, headers, data = await self._post(self._request(prompt))
                finally:  # every request sent counts, answered or not
                    latencies.append(time.perf_counter() - t0)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return "timeout", None, True
        except _TooLarge:
            return "too_large", None, False  # the same question gets the same flood
        except (_BadEncoding, httpx.DecodingError):  # a body whose compression is broken or not offered
            return "parse_error", None, True
        except (httpx.RequestError, OSError) + _aiohttp_errors():
            return "connection", None, True
        if 200 <= status < 300:
            return self._read(data, v), None, True
        if status in (400, 422) and self.json_format and self.judge.json_mode == "auto" and not self.json_confirmed:
            self.json_format = False  # the server does not do JSON mode: ask in the prompt only
            return None
        return self._http_failure(status, headers, data)

    def _read(self, data: bytes, v: Verdict) -> str | None:
        """A 2xx body's score, reason and token counts into ``v``; the failure kind when it has none."""
        try:
            resp = jsonsafe.loads(data)  # not JSON, not UTF-8, or nested past reason: ValueError
            tokens_in, tokens_out = _usage(resp)
            v.tokens_in += tokens_in
            v.tokens_out += tokens_out
            v.score, v.reason = self._answer(resp)
        except BadAnswer as e:
            return e.kind
        except ValueError:  # a 200 whose body is no JSON (cut off by a proxy, or worse)
            return "parse_error"
        self.json_confirmed = self.json_confirmed or self.json_format
        return None

    def _http_failure(self, status: int, headers, data: bytes) -> tuple[str, float | None, bool]:
        """(failure kind, seconds to wait, whether another try can help) for a non-2xx answer; a
        refused key or an unknown model stops the whole run (JudgeFatal)."""
        if 300 <= status < 400:
            # never followed: a 301/302/303 would turn the POST into a GET, whose answer
            # is to no prompt of ours, and a 307/308 would send the key and prompt elsewhere
            return "redirect", None, False
        if status in (401, 403):
            raise JudgeFatal(self._scrub(
                f"judge {self.judge.name}: {self.judge.base_url} refused the request (HTTP {status}); "
                f"check the key in ${self.judge.api_key_env or '(no api_key_env set)'}")) from None
        if status == 404:
            raise JudgeFatal(self._scrub(
                f"judge {self.judge.name}: HTTP 404 from {self.judge.base_url} for model "
                f"'{self.judge.model}': {_message(data, status, self._scrub)}")) from None
        if status == 429:
            return "rate_limited", _retry_after(headers), True
        if status >= 500:
            return "server_error", _retry_after(headers), True
        if status == 408:
            return "timeout", None, True
        return f"http_{status}", None, False  # this request is wrong; sending it again will not help


def _usage(resp) -> tuple[int, int]:
    """(prompt, completion) tokens of a reply; absent counts are 0, malformed ones a BadAnswer."""
    usage = resp.get("usage") if isinstance(resp, dict) else None
    if usage is None:
        return 0, 0
    if not isinstance(usage, dict):
        raise BadAnswer("parse_error", "usage is not an object")
    out = []
    for field in ("prompt_tokens", "completion_tokens"):
        n = usage.get(field)
        if n is None:
            n = 0
        elif isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_TOKEN_COUNT:
            raise BadAnswer("parse_error", f"usage.{field} is not a token count")
        out.append(n)
    return out[0], out[1]


def _top_logprobs(logprobs) -> dict[str, float]:
    """{token: logprob} of the first generated token's top_logprobs (and the token itself)."""
    if logprobs is None:
        raise BadAnswer("no_logprobs", "the server returned no logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(logprobs, dict) or (content is not None and not isinstance(content, list)):
        raise BadAnswer("parse_error", "malformed logprobs in the response")
    if not content:
        raise BadAnswer("no_logprobs", "the server returned no logprobs")
    first = content[0]
    entries = first.get("top_logprobs") if isinstance(first, dict) else None
    if not isinstance(first, dict) or not isinstance(entries if entries is not None else [], list):
        raise BadAnswer("parse_error", "malformed logprobs in the response")
    top: dict[str, float] = {}
    for t in [*(entries or []), first]:  # the chosen token counts where top_logprobs lacks it
        token = t.get("token") if isinstance(t, dict) else None
        lp = t.get("logprob") if isinstance(t, dict) else None
        if not isinstance(token, str) or isinstance(lp, bool) or not isinstance(lp, (int, float)):
            raise BadAnswer("parse_error", "malformed logprobs in the response")
        try:
            lp = float(lp)
        except OverflowError:  # an integer of hundreds of digits
            raise BadAnswer("parse_error", "a log-probability out of range") from None
        if math.isnan(lp):
            raise BadAnswer("parse_error", "a log-probability that is NaN")
        top.setdefault(token, lp)
    return top


def _http_client(openai, timeout_s: float):
    """The HTTP client under the openai package (aiohttp where installed, openai[aiohttp]:
    about 40% less CPU a request than the default httpx transport, which is what bounds
    throughput at high concurrency), with redirects off; and its httpx module."""
    import importlib

    try:
        http = openai.DefaultAioHttpClient(follow_redirects=False, timeout=timeout_s)
    except (ImportError, RuntimeError):  # the client raises RuntimeError when aiohttp is missing
        http = openai.DefaultAsyncHttpxClient(follow_redirects=False, timeout=timeout_s)
    root = next(c.__module__.split(".")[0] for c in type(http).__mro__
                if c.__name__ == "AsyncClient" and c.__module__.split(".")[0] in ("httpx", "httpx2"))
    return http, importlib.import_module(root)


def _aiohttp_errors() -> tuple:
    try:
        import aiohttp
    except ImportError:
        return ()
    return (aiohttp.ClientError,)  # what the aiohttp transport does not map to httpx's errors


def _message(data: bytes, status: int, scrub_text) -> str:
    """The message of an error reply (OpenAI's {"error": {"message"}} and the usual others), on
    one line: scrubbed (``scrub_text``) before it is cut, so no cut leaves part of a key."""
    text = data.decode("utf-8", errors="replace")
    msg = None
    try:
        body = jsonsafe.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        msg = inner.get("message") if isinstance(inner, dict) else (
            inner if isinstance(inner, str) else body.get("message") or body.get("detail"))
    if not isinstance(msg, str) or not msg.strip():
        msg = text if text.strip() and body is None else f"HTTP {status}"
    return one_line(scrub_text(msg))


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
