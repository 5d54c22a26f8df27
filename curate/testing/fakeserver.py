"""A small OpenAI-compatible chat server for tests, benchmarks and dry runs of a jury.

    python -m curate.testing.fakeserver --port 8000 --latency-ms 20

It answers ``/v1/chat/completions`` as a judge would. What it answers is steered by
directives written into the prompt (so a test record says how the judge should misbehave):

    @score=N            answer {"score": N, ...} (default: a score derived from the prompt's hash)
    @MODEL:score=N      the same, only for requests to model MODEL
    @malformed[=K]      answer prose instead of JSON (the first K attempts; always without K)
    @out_of_scale[=K]   answer a score of 99
    @broken_body[=K]    HTTP 200 whose JSON body is cut off, as a proxy that drops a connection does
    @429[=K]            HTTP 429 with Retry-After (seconds: --retry-after)
    @500[=K]            HTTP 500
    @stall[=K]          wait --stall-s seconds before answering
    @401                HTTP 401 echoing the bearer token, as careless servers do
    @shape=NAME         a hostile reply from HOSTILE below (always): bodies of the wrong shape,
                        a key echoed back, a body dripped or too big, a redirect

Any directive may carry a MODEL: prefix. Attempts are counted per (model, prompt).
``GET /stats`` returns calls, the maximum requests in flight and status counts; ``POST /reset``
clears them. ``--no-json-mode`` refuses ``response_format`` with HTTP 400, like servers without it.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import re
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_SHAPE = re.compile(r"@shape=([a-z0-9_]+)")
_DIRECTIVE = re.compile(r"@(?:([A-Za-z0-9_.-]+):)?(score|malformed|broken_body|out_of_scale|429|500|stall|401)(?:=(\d+))?")


class FakeJudgeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, host="127.0.0.1", port=0, latency_s=0.0, stall_s=5.0, retry_after=0.05,
                 json_mode=True, drip_s=0.02, big_bytes=2_000_000):
        super().__init__((host, port), _Handler)
        self.latency_s, self.stall_s, self.retry_after, self.json_mode = latency_s, stall_s, retry_after, json_mode
        self.drip_s, self.big_bytes = drip_s, big_bytes  # @shape=drip_*: seconds a byte; @shape=big_*: body size
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.calls = 0
            self.inflight = 0
            self.max_inflight = 0
            self.statuses: dict[str, int] = {}
            self.attempts: dict[str, int] = {}
            self.last_request: dict | None = None
            self.gets = 0  # GETs of a redirect target: a judge request must never become one

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stats(self) -> dict:
        with self.lock:
            return {"calls": self.calls, "max_inflight": self.max_inflight, "statuses": dict(self.statuses)}

    def start(self) -> "FakeJudgeServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


def _directives(prompt: str, model: str) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for m_model, action, value in _DIRECTIVE.findall(prompt):
        if m_model and m_model != model:
            continue
        if m_model or action not in found:  # a model-specific directive overrides a general one
            found[action] = int(value) if value else None
    return found


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: without this, +40 ms each
    server: FakeJudgeServer

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None):
        self._send_raw(status, json.dumps(body).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        with self.server.lock:
            self.server.statuses[str(status)] = self.server.statuses.get(str(status), 0) + 1

    def do_GET(self):
        if self.path.rstrip("/").endswith("/stats"):
            return self._send(200, self.server.stats())
        if self.path.startswith("/v1/elsewhere"):  # where @shape=redirect_* points: a score for no prompt
            with self.server.lock:
                self.server.gets += 1
            return self._send(200, _completion("elsewhere", json.dumps({"score": 5, "reason": "never asked"})))
        self._send(404, {"error": {"message": "not found"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.rstrip("/").endswith("/reset"):
            self.server.reset()
            return self._send(200, {"ok": True})
        if self.path.startswith("/v1/elsewhere"):  # a 307/308 followed: the POST lands here
            return self._send(200, _completion("elsewhere", json.dumps({"score": 5, "reason": "never asked"})))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        srv = self.server
        with srv.lock:
            srv.calls += 1
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            self._complete(json.loads(body))
        finally:
            with srv.lock:
                srv.inflight -= 1

    def _complete(self, req: dict):
        srv = self.server
        model = req.get("model", "")
        prompt = "\n".join(str(m.get("content", "")) for m in req.get("messages", []))
        key = hashlib.sha256(f"{model}\0{prompt}".encode()).hexdigest()
        with srv.lock:
            attempt = srv.attempts[key] = srv.attempts.get(key, 0) + 1
            srv.last_request = req
        d = _directives(prompt, model)

        def active(name):  # a directive applies always, or for its first K attempts
            return name in d and (d[name] is None or attempt <= d[name])

        if srv.latency_s:
            time.sleep(srv.latency_s)
        shape = _SHAPE.search(prompt)
        if shape:
            return self._hostile(shape.group(1), model, req)
        if active("stall"):
            time.sleep(srv.stall_s)
        if active("401"):
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            return self._send(401, {"error": {"message": f"Incorrect API key provided: {token}"}})
        if active("429"):
            return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": str(srv.retry_after)})
        if active("500"):
            return self._send(500, {"error": {"message": "internal error"}})
        if req.get("response_format") and not srv.json_mode:
            return self._send(400, {"error": {"message": "response_format is not supported"}})
        score = d.get("score")
        if score is None:
            score = 1 + int(key[:8], 16) % 5
        if active("broken_body"):
            return self._send_raw(200, json.dumps(_completion(model, "{}")).encode()[:40])
        if req.get("logprobs"):
            return self._send(200, _completion(model, str(score), _logprobs(score)))
        if active("malformed"):
            text = f"I would give this a {score} because it is fine."
        elif active("out_of_scale"):
            text = json.dumps({"score": 99, "reason": "off the scale"})
        else:
            text = json.dumps({"score": score, "reason": f"scored {score} by {model}"})
        return self._send(200, _completion(model, text))


    def _hostile(self, name: str, model: str, req: dict):
        srv = self.server
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if name.startswith("redirect_"):
            return self._send(int(name.split("_")[1]), {"error": {"message": "moved"}},
                              {"Location": "/v1/elsewhere"})
        if name == "drip_body":  # headers at once, then the body a byte at a time
            return self._drip(json.dumps(_completion(model, json.dumps({"score": 4, "reason": "slow"}))).encode(),
                              headers_first=True)
        if name == "drip_headers":  # even the status line comes a byte at a time
            return self._drip(json.dumps(_completion(model, json.dumps({"score": 4, "reason": "slow"}))).encode(),
                              headers_first=False)
        if name.startswith("big_"):  # a valid answer padded to big_bytes
            pad = "x" * srv.big_bytes
            data = json.dumps({**_completion(model, json.dumps({"score": 4, "reason": "big"})), "pad": pad}).encode()
            if name == "big_gzip":
                return self._send_raw(200, gzip.compress(data, 9), {"Content-Encoding": "gzip"})
            if name == "big_chunked":
                return self._send_chunked(data)
            return self._send_raw(200, data)
        if name == "encoding_br":  # an encoding we never offered
            return self._send_raw(200, b"\x1b\x00\x00garbage", {"Content-Encoding": "br"})
        if name == "encoding_bad_gzip":  # gzip that does not inflate
            return self._send_raw(200, b"\x1f\x8b\x08\x00garbage-not-deflate", {"Content-Encoding": "gzip"})
        if name == "encoding_deflate_raw":  # raw deflate, as some servers send it: fine
            z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
            data = json.dumps(_completion(model, json.dumps({"score": 2, "reason": "raw deflate"}))).encode()
            return self._send_raw(200, z.compress(data) + z.flush(), {"Content-Encoding": "deflate"})
        if name == "encoding_deflate_bomb":  # 30 MB of spaces after a valid answer, in a few KB
            z = zlib.compressobj(9)
            data = json.dumps(_completion(model, json.dumps({"score": 2, "reason": "x"}))).encode()
            body = z.compress(data)
            for _ in range(30):
                body += z.compress(b" " * 1_000_000)
            return self._send_raw(200, body + z.flush(), {"Content-Encoding": "deflate"})
        if name in HOSTILE_RAW:  # a body that is not what it claims
            return self._send_raw(200, HOSTILE_RAW[name])
        if name == "not_found_echo":
            return self._send(404, {"error": {"message": f"model not found for key {token} (Bearer {token})"}})
        body = HOSTILE[name](model, token, bool(req.get("logprobs")))
        return self._send(200, body)

    def _drip(self, data: bytes, headers_first: bool):
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        if headers_first:
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        try:
            for i in range(len(head + data)):
                self.wfile.write((head + data)[i:i + 1])
                self.wfile.flush()
                time.sleep(self.server.drip_s)
        except OSError:  # the client gave up: what a deadline is for
            self.close_connection = True

    def _send_chunked(self, data: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for i in range(0, len(data), 65536):
                part = data[i:i + 65536]
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with(model: str, content=None, *, message=None, usage=None, logprobs=None) -> dict:
    body = _completion(model, content if content is not None else json.dumps({"score": 4, "reason": "fine"}))
    if message is not None:
        body["choices"][0]["message"] = message
    if usage is not None:
        body["usage"] = usage
    if logprobs is not None:
        body["choices"][0]["logprobs"] = logprobs
    return body


def _top(entries) -> dict:
    return {"content": [{"token": entries[0][0], "logprob": entries[0][1], "top_logprobs":
                         [{"token": t, "logprob": lp} for t, lp in entries]}]}


# @shape=NAME: a 200 whose JSON has the wrong shape somewhere, as broken or hostile servers send.
# Each takes (model, the bearer token the client sent, whether logprobs were asked).
HOSTILE = {
    # the score
    "score_huge_int": lambda m, k, lp: _with(m, '{"score": ' + "9" * 401 + ', "reason": "big"}'),
    "score_huge_negative": lambda m, k, lp: _with(m, '{"score": -' + "9" * 401 + ', "reason": "big"}'),
    "score_huge_float": lambda m, k, lp: _with(m, '{"score": 1e400, "reason": "big"}'),
    "score_list": lambda m, k, lp: _with(m, '{"score": [4], "reason": "listed"}'),
    "score_object": lambda m, k, lp: _with(m, '{"score": {"value": 4}, "reason": "wrapped"}'),
    "content_deep": lambda m, k, lp: _with(m, _deep(3000)),
    "content_deep_score": lambda m, k, lp: _with(m, '{"score": ' + _deep(3000) + ', "reason": "x"}'),
    "reason_deep": lambda m, k, lp: _with(m, '{"score": 4, "reason": ' + _deep(900) + '}'),
    "content_list": lambda m, k, lp: _with(m, message={"role": "assistant", "content": [{"type": "text", "text": "4"}]}),
    # the message
    "message_string": lambda m, k, lp: _with(m, message='{"score": 4}'),
    "message_list": lambda m, k, lp: _with(m, message=[{"content": '{"score": 4}'}]),
    "message_number": lambda m, k, lp: _with(m, message=4),
    "choice_string": lambda m, k, lp: {**_completion(m, ""), "choices": ['{"score": 4}']},
    "choices_object": lambda m, k, lp: {**_completion(m, ""), "choices": {"0": {"message": {"content": "4"}}}},
    "body_list": lambda m, k, lp: [_completion(m, json.dumps({"score": 4}))],
    "body_deep_field": lambda m, k, lp: {**_with(m), "extra": json.loads(_deep(500))},
    # usage
    "usage_string": lambda m, k, lp: _with(m, usage={"prompt_tokens": "12", "completion_tokens": 3}),
    "usage_list": lambda m, k, lp: _with(m, usage={"prompt_tokens": [1], "completion_tokens": 3}),
    "usage_negative": lambda m, k, lp: _with(m, usage={"prompt_tokens": -5, "completion_tokens": 3}),
    "usage_huge": lambda m, k, lp: _with(m, usage={"prompt_tokens": 10 ** 400, "completion_tokens": 3}),
    "usage_float": lambda m, k, lp: _with(m, usage={"prompt_tokens": 1e300, "completion_tokens": 3}),
    "usage_bool": lambda m, k, lp: _with(m, usage={"prompt_tokens": True, "completion_tokens": 3}),
    "usage_not_object": lambda m, k, lp: _with(m, usage="lots"),
    # logprobs
    "logprobs_string": lambda m, k, lp: _with(m, "4", logprobs="4"),
    "logprobs_content_string": lambda m, k, lp: _with(m, "4", logprobs={"content": "4"}),
    "logprobs_entry_string": lambda m, k, lp: _with(m, "4", logprobs={"content": ["4"]}),
    "logprobs_top_object": lambda m, k, lp: _with(m, "4", logprobs={"content": [
        {"token": "4", "logprob": -0.1, "top_logprobs": {"4": -0.1}}]}),
    "logprob_1000": lambda m, k, lp: _with(m, "4", logprobs=_top([("4", 1000.0), ("3", -1.0)])),
    "logprob_huge_int": lambda m, k, lp: _with(m, "4", logprobs=_top([("4", 10 ** 400), ("3", -1.0)])),
    "logprob_positive": lambda m, k, lp: _with(m, "4", logprobs=_top([("4", 0.7), ("3", 0.5)])),
    "logprob_string": lambda m, k, lp: _with(m, "4", logprobs=_top([("4", "-0.1"), ("3", -1.0)])),
    "logprob_nan_token": lambda m, k, lp: _with(m, "4", logprobs=_top([(4, -0.1), ("3", -1.0)])),
    "logprob_superscript_token": lambda m, k, lp: _with(m, "4", logprobs=_top([("\u00b2", -0.1), ("4", -2.5)])),
    "logprob_token_list": lambda m, k, lp: _with(m, "4", logprobs=_top([(["4"], -0.1), ("3", -1.0)])),
    # the key, echoed back in what becomes the reason
    "echo_auth": lambda m, k, lp: _with(m, json.dumps({"score": 4, "reason": f"I was sent Authorization: Bearer {k}"})),
    "echo_key_bare": lambda m, k, lp: _with(m, json.dumps({"score": 4, "reason": f"your key is {k}."})),
    "echo_key_in_object": lambda m, k, lp: _with(m, json.dumps({"score": 4, "reason": {"seen": k}})),
    "echo_other_tokens": lambda m, k, lp: _with(m, json.dumps({"score": 4, "reason": (
        "headers: authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl; "
        "x-api-key: sk-proj-AbCdEf0123456789AbCdEf0123456789; hf token hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345")})),
}

# bodies that are not JSON of any shape
HOSTILE_RAW = {
    "body_deep": _deep(3000).encode(),
    "body_deep_object": ('{"a":' * 3000 + "1" + "}" * 3000).encode(),
    "body_not_utf8": b'{"choices": [{"message": {"content": "\xff\xfe"}}]}',
    "body_empty": b"",
}


def _logprobs(score: int) -> dict:
    # most mass on the score, the rest on its neighbours: the expectation stays near the score
    probs = {str(score): 0.8}
    for other, p in ((score - 1, 0.1), (score + 1, 0.1)):
        probs[str(other) if 0 <= other <= 9 else "x"] = p
    top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in probs.items()]
    return {"content": [{"token": str(score), "logprob": math.log(0.8), "bytes": None, "top_logprobs": top}]}


def _completion(model: str, text: str, logprobs: dict | None = None) -> dict:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": max(1, len(text) // 4), "total_tokens": 100 + len(text) // 4},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--stall-s", type=float, default=5.0)
    ap.add_argument("--no-json-mode", action="store_true")
    args = ap.parse_args(argv)
    srv = FakeJudgeServer(args.host, args.port, args.latency_ms / 1000, args.stall_s, json_mode=not args.no_json_mode)
    print(f"fake judge server on {srv.base_url}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
