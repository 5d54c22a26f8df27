import json

import pytest


def write_jsonl(path, convs):
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in convs))
    return path


def arithmetic(n: int, offset: int = 0) -> list[list[dict]]:
    """Learnable data: the answer repeats the question's numbers in a fixed form."""
    out = []
    for i in range(offset, offset + n):
        a, b = i % 7 + 1, i % 5 + 2
        out.append([{"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"The answer is {a + b}."}])
    return out


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_jsonl(d / "train.jsonl", arithmetic(48))
    write_jsonl(d / "eval.jsonl", arithmetic(8, offset=100))
    return d


@pytest.fixture
def base_cfg(tiny_model, data_dir, tmp_path):
    """Keys of a fast tiny run; tests override what they exercise."""
    return dict(model=str(tiny_model), data=str(data_dir), method="lora", max_length=64, lr=5e-3,
                batch_size=8, max_steps=12, eval_every=6, seed=0, report_to="none",
                warmup_ratio=0.0, scheduler="constant", logging_steps=2,
                lora={"r": 8, "alpha": 16, "dropout": 0.0}, output_dir=str(tmp_path / "run"))
