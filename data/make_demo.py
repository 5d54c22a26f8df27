"""Write data/demo/raw.jsonl: seeded, realistic instruction records with planted defects.

    python data/make_demo.py            # (re)write the file
    python data/make_demo.py --check    # exit 1 if the committed files differ from a fresh run

It also writes data/demo/sample.jsonl (every 12th line), the input of pipelines/ci.yaml.

Records come in five input formats (OpenAI messages, ShareGPT, Alpaca, prompt/completion,
question/answer). Each defect kind the default rules target is planted at a known rate;
``demo_label`` (kept in ``meta`` by the reader) names what was planted, so tests can
measure what the rules catch. Exact and near duplicates are planted for ``curate dedup``.
Bad lines (broken JSON, invalid UTF-8, missing and mistyped fields) test the reader.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

SEED = 20261123
N_CLEAN = 2400
OUT = Path(__file__).resolve().parent / "demo" / "raw.jsonl"
NL = b"\n"

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonah", "Kira", "Luis",
         "Maya", "Noor", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yara"]
ITEMS = [("apples", "bags"), ("pencils", "boxes"), ("cookies", "trays"), ("marbles", "jars"),
         ("stickers", "sheets"), ("books", "shelves"), ("eggs", "cartons"), ("cards", "packs")]
COUNTRIES = [("France", "Paris", "euro"), ("Japan", "Tokyo", "yen"), ("Kenya", "Nairobi", "shilling"),
             ("Brazil", "Brasília", "real"), ("Canada", "Ottawa", "dollar"), ("India", "New Delhi", "rupee"),
             ("Egypt", "Cairo", "pound"), ("Norway", "Oslo", "krone"), ("Peru", "Lima", "sol"),
             ("Vietnam", "Hanoi", "dong"), ("Poland", "Warsaw", "złoty"), ("Chile", "Santiago", "peso")]
TOPICS = ["photosynthesis", "compound interest", "the water cycle", "binary search", "vaccination",
          "plate tectonics", "supply and demand", "the greenhouse effect", "recursion", "inflation",
          "DNS resolution", "the Pythagorean theorem", "public-key cryptography", "gradient descent"]
FUNCS = [
    ("reverse a string", "reverse_string", "s", "return s[::-1]"),
    ("return the factorial of n", "factorial", "n", "result = 1\n    for i in range(2, n + 1):\n        result *= i\n    return result"),
    ("check whether a number is prime", "is_prime", "n", "if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n        if n % d == 0:\n            return False\n    return True"),
    ("count the vowels in a string", "count_vowels", "text", "return sum(1 for ch in text.lower() if ch in 'aeiou')"),
    ("return the largest element of a list", "largest", "items", "best = items[0]\n    for x in items[1:]:\n        if x > best:\n            best = x\n    return best"),
    ("compute the n-th Fibonacci number", "fib", "n", "a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a"),
    ("remove duplicates from a list while keeping order", "dedupe", "items", "seen = set()\n    out = []\n    for x in items:\n        if x not in seen:\n            seen.add(x)\n            out.append(x)\n    return out"),
    ("sum the digits of a non-negative integer", "digit_sum", "n", "return sum(int(d) for d in str(n))"),
]
SYSTEMS = ["You are a helpful assistant.", "You are a concise tutor.", "Answer carefully and show your reasoning."]


def math_task(rng: random.Random):
    name, (item, box) = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 12), rng.randint(3, 24), rng.randint(1, 30)
    q = (f"{name} has {a} {box} of {item} with {b} {item} in each. {name} gives away {c} {item}. "
         f"How many {item} does {name} have left?")
    total = a * b
    ans = (f"{name} starts with {a} * {b} = {total} {item}.\nAfter giving away {c}, "
           f"{name} has {total} - {c} = {total - c} {item} left.\n#### {total - c}")
    return q, ans


def fact_task(rng: random.Random):
    country, capital, currency = rng.choice(COUNTRIES)
    kind = rng.randrange(3)
    if kind == 0:
        return f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    if kind == 1:
        return (f"Which currency is used in {country}, and what is its capital city?",
                f"{country} uses the {currency}, and its capital city is {capital}.")
    return (f"Write one sentence a traveller should know before visiting {capital}.",
            f"{capital} is the capital of {country}, and prices there are shown in the local {currency}.")


def explain_task(rng: random.Random):
    topic = rng.choice(TOPICS)
    style = rng.choice(["in simple terms", "to a high-school student", "in three short paragraphs", "briefly"])
    opener = rng.choice(["At its core,", "In short,", "Put simply,", "The key idea is that"])
    body = (f"{opener} {topic} describes how one quantity changes in response to another. "
            f"A good way to understand {topic} is to follow a small example step by step and to ask what "
            f"would change if one of the inputs were doubled.\n\n"
            f"People meet {topic} in everyday situations, often without naming it. Once the pattern is clear, "
            f"it becomes easier to predict outcomes and to explain them to someone else.")
    return f"Explain {topic} {style}.", body


def code_task(rng: random.Random):
    desc, fname, arg, body = rng.choice(FUNCS)
    lead = rng.choice(["Write a Python function to", "Using Python, write a function to", "Implement a Python function that can"])
    ans = (f"Here is a simple implementation:\n\n```python\ndef {fname}({arg}):\n    {body}\n```\n\n"
           f"The function `{fname}` takes `{arg}` and returns the result directly.")
    return f"{lead} {desc}.", ans


def json_task(rng: random.Random):
    name, (_, capital, _) = rng.choice(NAMES), rng.choice(COUNTRIES)
    age = rng.randint(19, 70)
    q = f"Return a JSON object with the keys name, age and city for this person: {name}, {age}, lives in {capital}."
    obj = json.dumps({"name": name, "age": age, "city": capital}, ensure_ascii=False)
    return q, f"```json\n{obj}\n```"


def rewrite_task(rng: random.Random):
    name = rng.choice(NAMES)
    s = f"{name} were going to the store yesterday and buyed three apple for they're lunch."
    return (f"Correct the grammar in this sentence: \"{s}\"",
            f"{name} went to the store yesterday and bought three apples for lunch.")


TASKS = [math_task, math_task, fact_task, explain_task, code_task, json_task, rewrite_task]


# --- defects: each takes a clean (prompt, answer) and returns a broken one -------------------------
def d_empty(rng, q, a): return q, rng.choice(["", " ", "\n"])
def d_placeholder(rng, q, a): return q, rng.choice(["<No Output>", "N/A", "<noinput>", "<nooutput>", "None"])
def d_refusal(rng, q, a):
    return q, rng.choice([
        "As an AI language model, I cannot browse the internet or give personal opinions.",
        "I'm sorry, but I cannot help with that request.",
        f"As an AI language model, I don't have personal preferences. However, {a[:80]}",
    ])
def d_merged(rng, q, a):
    k = rng.randint(2, 19)
    return q, f"{a}\n##\n{k}. Instruction: Name three primary colours.\n{k}. Input: <noinput>\n{k}. Output: Red, blue and yellow."
def d_url(rng, q, a): return "Summarize the following article.\n\nhttps://www.example.com/news/" + str(rng.randint(1000, 9999)), a
def d_image(rng, q, a): return rng.choice(["Describe what is shown in this picture. <image attached>", "What breed is the dog in the photo? [image]", "Identify the landmark in this image <image>"]), a
def d_control(rng, q, a):
    i = rng.randrange(len(a) + 1)
    return q, a[:i] + rng.choice(["\x00", "\x07", "\x1b", "\x0c"]) + a[i:]
def d_repeat(rng, q, a):
    loop = rng.choice(["I hope this helps. ", "The answer is correct and complete. ", "Let me know if you need anything else.\n"])
    return q, a + "\n" + loop * rng.randint(25, 60)
def d_bad_json(rng, q, a):
    q2, good = json_task(rng)
    return q2, good.replace(", \"age\"", " \"age\"").replace("}", "")
def d_bad_code(rng, q, a):
    q2, good = code_task(rng)
    return q2, good.replace("):\n", ")\n", 1)


DEFECTS = {
    "empty_output": (d_empty, 0.02), "placeholder_output": (d_placeholder, 0.02), "refusal": (d_refusal, 0.02),
    "merged_instructions": (d_merged, 0.015), "url_only_input": (d_url, 0.015), "image_placeholder": (d_image, 0.015),
    "control_chars": (d_control, 0.015), "repetition": (d_repeat, 0.015), "invalid_json": (d_bad_json, 0.015),
    "invalid_python": (d_bad_code, 0.015),
}


def as_format(rng: random.Random, q: str, a: str, label: str) -> dict:
    fmt = rng.choices(["openai", "sharegpt", "alpaca", "prompt_completion", "qa"], [4, 2, 3, 1, 1])[0]
    system = rng.choice(SYSTEMS) if rng.random() < 0.3 else None
    if fmt == "openai":
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rec = {"messages": msgs}
    elif fmt == "sharegpt":
        conv = ([{"from": "system", "value": system}] if system else []) + [
            {"from": "human", "value": q}, {"from": "gpt", "value": a}]
        rec = {"conversations": conv}
    elif fmt == "alpaca":
        head, sep, tail = q.partition("\n\n")
        rec = {"instruction": head, "input": tail if sep else "", "output": a}
    elif fmt == "prompt_completion":
        rec = {"prompt": q, "completion": a}
    else:
        rec = {"question": q, "answer": a}
    rec["demo_label"] = label
    return rec


def near_duplicate(rng: random.Random, rec: dict) -> dict:
    """Change one or two words of the answer: a near duplicate for MinHash/semantic dedup."""
    out = json.loads(json.dumps(rec))
    key = next(k for k in ("messages", "conversations", "output", "completion", "answer") if k in out)
    swaps = [("is", "was"), ("the", "this"), ("and", "&"), ("a ", "one "), (".", "!")]
    def edit(text: str) -> str:
        old, new = rng.choice(swaps)
        return text.replace(old, new, 1) + rng.choice([" Thanks!", " Hope this helps.", " :)"])
    if key in ("messages", "conversations"):
        last = out[key][-1]
        field = "content" if key == "messages" else "value"
        last[field] = edit(last[field])
    else:
        out[key] = edit(out[key])
    out["demo_label"] = "near_duplicate"
    return out


def build(n_clean: int = N_CLEAN, seed: int = SEED) -> bytes:
    rng = random.Random(seed)
    records: list[dict] = []
    seen: set[tuple[str, str]] = set()
    n_dup = round(n_clean * 0.0375)  # 90 of each kind in the committed file
    for _ in range(n_clean):
        # every base record is distinct, so the planted duplicates below are the only ones
        q, a = rng.choice(TASKS)(rng)
        while (q, a) in seen:
            q, a = rng.choice(TASKS)(rng)
        seen.add((q, a))
        label = "clean"
        for name, (fn, rate) in DEFECTS.items():
            if rng.random() < rate:
                q, a = fn(rng, q, a)
                label = name
                break
        records.append(as_format(rng, q, a, label))
    # exact duplicates (same record again) and near duplicates of clean records
    clean = [r for r in records if r["demo_label"] == "clean"]
    for r in rng.sample(clean, n_dup):
        dup = dict(r, demo_label="exact_duplicate")
        records.insert(rng.randrange(len(records) + 1), dup)
    prose = [r for r in clean if "```" not in json.dumps(r)]  # editing code would break it
    for r in rng.sample(prose, n_dup):
        records.insert(rng.randrange(len(records) + 1), near_duplicate(rng, r))
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in records]
    # reader defects: broken JSON, invalid UTF-8, missing and mistyped fields, empty conversation
    bad = [
        b'{"instruction": "Name a prime number.", "output": "7"',
        b'{"prompt": "Translate \'caf\xe9\' to English", "completion": "coffee"}',
        b'{"instruction": "List three fruits.", "input": ""}',
        b'{"question": "What is 2 + 2?", "answer": 4}',
        b'{"messages": []}',
        b'{"messages": [{"role": "narrator", "content": "Once upon a time"}]}',
        b'not json at all',
    ]
    for b in bad:
        lines.insert(rng.randrange(len(lines) + 1), b)
    return b"\n".join(lines) + b"\n"


def sample(data: bytes, every: int = 12) -> bytes:
    """Every 12th line: the small input of pipelines/ci.yaml, which CI rebuilds and verifies."""
    return b"".join(line + b"\n" for line in data.split(b"\n")[:-1][::every])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = build()
    outputs = {args.out: data, args.out.with_name("sample.jsonl"): sample(data)}
    if args.check:
        for path, body in outputs.items():
            if not path.is_file() or path.read_bytes() != body:
                print(f"{path} differs from a fresh run of {Path(__file__).name}", file=sys.stderr)
                return 1
            print(f"{path}: up to date ({body.count(NL)} lines)")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for path, body in outputs.items():
        path.write_bytes(body)
        print(f"wrote {path} ({body.count(NL)} lines)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
