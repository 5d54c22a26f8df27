import pytest

from curate.config import ConfigError
from curate.score.jury import load_jury, warnings_for

from .jurytools import RUBRIC


def write(tmp_path, text):
    p = tmp_path / "j.yaml"
    p.write_text(text)
    return p


BASE = f"rubric: {RUBRIC}\n"


@pytest.mark.parametrize("body, message", [
    ("judges:\n  - {name: a, backend: openai, model: m, base_url: http://127.0.0.1:1/v1, temprature: 0}\n",
     "judges[0] (a): unknown key 'temprature' (did you mean 'temperature'?)"),
    ("judges:\n  - {name: a, backend: vllm, model: m}\n", "judges[0] (a).backend: 'vllm' is not one of openai, local"),
    ("judges:\n  - {name: a, backend: openai, model: m}\n", "an openai judge needs base_url"),
    ("judges:\n  - {name: a, backend: local, model: m, base_url: http://x}\n", "'base_url' is for openai judges"),
    ("judges:\n  - {name: a, backend: openai, model: m, base_url: 'ftp://h/v1'}\n", "base_url must be an http"),
    ("judges:\n  - {name: a, backend: openai, model: m, base_url: 'api.openai.com/v1'}\n", "base_url must be an http"),
    ("judges:\n  - {name: a, backend: openai, model: m, base_url: 'https://u:pw1234@h/v1'}\n",
     "base_url must not carry a user or password"),
    ("judges:\n  - {name: a, backend: local, model: m, mode: json}\n", "mode must be logprobs"),
    ("judges:\n  - {name: a, backend: local, model: m}\nquorum: 2\n", "quorum 2 is more than the 1 judges"),
    ("judges:\n  - {name: a, backend: local, model: m}\n  - {name: a, backend: local, model: n}\n",
     "judge name 'a' is used twice"),
    ("judges:\n  - {name: a, backend: local, model: m}\nscale: [1, 10]\n", "logprobs judges need single-digit scores"),
    ("judges:\n  - {name: a, backend: local, model: m}\naggregate: average\n",
     "aggregate: 'average' is not one of mean, median, min, majority"),
])
def test_bad_jury_files_are_one_line_naming_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError) as e:
        load_jury(write(tmp_path, body + BASE))
    assert message in str(e.value) and str(tmp_path / "j.yaml") in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_rubric_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"rubric: .*rubric file nope.j2 not found"):
        load_jury(write(tmp_path, "judges:\n  - {name: a, backend: local, model: m}\nrubric: nope.j2\n"))


def test_rubric_path_resolves_beside_the_jury_file(tmp_path):
    (tmp_path / "r.j2").write_text("{{ transcript }}")
    jury = load_jury(write(tmp_path, "judges:\n  - {name: a, backend: local, model: m}\nrubric: r.j2\n"))
    assert jury.rubric == str(tmp_path / "r.j2")


def test_plain_http_to_another_host_warns(tmp_path):
    body = ("judges:\n  - {name: far, backend: openai, model: m, base_url: 'http://10.0.0.5:8000/v1', api_key_env: K}\n"
            "  - {name: near, backend: openai, model: m, base_url: 'http://localhost:8000/v1'}\n"
            "  - {name: tls, backend: openai, model: m, base_url: 'https://api.openai.com/v1'}\n")
    warns = warnings_for(load_jury(write(tmp_path, body + BASE)))
    assert len(warns) == 1 and warns[0].startswith("judge far: http://10.0.0.5:8000/v1 is plain http")
    assert "API key" in warns[0]


def test_fingerprint_follows_the_rubric_text_not_the_cache_or_key(tmp_path):
    (tmp_path / "r.j2").write_text("v1 {{ transcript }}")
    j1 = load_jury(write(tmp_path, "judges:\n  - {name: a, backend: local, model: m}\nrubric: r.j2\ncache: a.sqlite\n"))
    j2 = load_jury(write(tmp_path, "judges:\n  - {name: a, backend: local, model: m}\nrubric: r.j2\ncache: b.sqlite\n"))
    before = j1.fingerprint()
    assert before == j2.fingerprint()
    (tmp_path / "r.j2").write_text("v2 {{ transcript }}")
    assert j1.fingerprint() != before
