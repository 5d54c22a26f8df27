"""GSM8K-like word problems, generated: the GPU kit's data, since ../shared does not travel.

Each problem is one or two arithmetic steps over small numbers, phrased from templates, and
answered the GSM8K way (a worked line per step with <<a+b=c>> calculator notes, then
``#### N``), so `train eval`'s gsm8k extractor and the default curation rules read it as
they read GSM8K. Seeded: the same arguments always give the same problems.
"""
from __future__ import annotations

import random

NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Randy", "Joy", "Mark",
         "Sofia", "Omar", "Priya", "Lena", "Carlos", "Mei", "Tom", "Grace"]
ITEMS = ["apples", "pencils", "marbles", "cookies", "stickers", "books", "shells", "cards", "eggs", "coins",
         "flowers", "toy cars", "cupcakes", "stamps", "bottles"]
FRIENDS = ["her brother", "his sister", "a friend", "the teacher", "a neighbour", "the school"]


def _add(rng, name, item):
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    q = f"{name} has {a} {item}. Then {name} gets {b} more {item}. How many {item} does {name} have now?"
    return q, [f"{name} has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} {item} now."], a + b


def _sub(rng, name, item):
    a = rng.randint(10, 90)
    b = rng.randint(1, a - 1)
    friend = rng.choice(FRIENDS)
    q = f"{name} had {a} {item} and gave {b} of them to {friend}. How many {item} does {name} have left?"
    return q, [f"{name} has {a} - {b} = <<{a}-{b}={a - b}>>{a - b} {item} left."], a - b


def _mul(rng, name, item):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    q = f"{name} buys {a} boxes of {item}. Each box holds {b} {item}. How many {item} did {name} buy?"
    return q, [f"{name} bought {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {item}."], a * b


def _two_step(rng, name, item):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    c = rng.randint(1, a * b - 1)
    q = (f"{name} buys {a} bags with {b} {item} in each bag, then gives {c} {item} away. "
         f"How many {item} does {name} keep?")
    return q, [f"{name} buys {a} * {b} = <<{a}*{b}={a * b}>>{a * b} {item}.",
               f"{name} keeps {a * b} - {c} = <<{a * b}-{c}={a * b - c}>>{a * b - c} {item}."], a * b - c


KINDS = [_add, _sub, _mul, _two_step]


def problem(rng: random.Random) -> list[dict]:
    q, steps, answer = rng.choice(KINDS)(rng, rng.choice(NAMES), rng.choice(ITEMS))
    return [{"role": "user", "content": q}, {"role": "assistant", "content": "\n".join(steps) + f"\n#### {answer}"}]


def problems(n: int, seed: int = 0) -> list[list[dict]]:
    """``n`` distinct problems (no question twice)."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(n * 50):
        if len(out) == n:
            break
        conv = problem(rng)
        if conv[0]["content"] not in seen:
            seen.add(conv[0]["content"])
            out.append(conv)
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct problems could be drawn, {n} asked")
    return out


def with_near_duplicates(convs: list[list[dict]], share: float, seed: int = 0) -> tuple[list[list[dict]], int]:
    """``convs`` plus, for a ``share`` of them, a copy whose question is reworded ("How many" ->
    "Can you tell how many"), the answer kept: what semantic dedup exists to find."""
    rng = random.Random(seed)
    out = list(convs)
    picked = rng.sample(range(len(convs)), int(len(convs) * share))
    for i in picked:
        user, answer = convs[i][0]["content"], convs[i][1]["content"]
        out.append([{"role": "user", "content": user.replace(" How many", " Can you tell how many", 1)},
                    {"role": "assistant", "content": answer}])
    rng.shuffle(out)
    return out, len(picked)
