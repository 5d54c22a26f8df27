"""Rubrics are sandboxed Jinja; record text is data, never a template (curate.score.rubric)."""
import pytest

from curate.config import ConfigError
from curate.score.rubric import render_prompts

SCALE = (1, 5)


def render(rubric, *texts):
    return render_prompts([[{"role": "user", "content": t}, {"role": "assistant", "content": "a"}] for t in texts],
                          rubric, "r.j2", SCALE, "json", 8000)


@pytest.mark.parametrize("rubric", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{% set x = messages.append(1) %}{{ x }}",
])
def test_a_rubric_cannot_reach_python(rubric):
    with pytest.raises(ConfigError) as e:
        render(rubric, "q")
    assert "r.j2" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text", [
    "{{ 7 * 7 }}", "{% for i in range(3) %}x{% endfor %}", "{{ ''.__class__ }}", "{# c #}", "{{ scale_max }}",
])
def test_record_text_is_never_evaluated(text):
    assert render("{{ instruction }}|{{ transcript }}", text)[0] == f"{text}|[user]\n{text}\n\n[assistant]\na"
