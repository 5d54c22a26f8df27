"""One self-contained HTML page from :func:`collect`'s data: inline CSS and SVG, and one small inline
script (the filter box); nothing is fetched. Every text from a build (record text, reasons, names)
goes through :func:`html.escape`; the script reads the page's text, never inserts HTML."""
from __future__ import annotations

import re
from html import escape as _escape

from . import svg
from .collect import EXAMPLES_PER_RULE

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape(text: str) -> str:
    """HTML-escaped (quotes too: safe in an attribute), control characters shown as their
    Unicode pictures (U+2400...) instead of written raw into the page."""
    return _CONTROL.sub(lambda m: "\u2421" if m.group() == "\x7f" else chr(0x2400 + ord(m.group())), _escape(str(text)))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1000px;padding:24px;color:#222}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#777}.chart text{font-size:11px;fill:#333}
table{border-collapse:collapse;margin:6px 0 12px}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
details{margin:4px 0 4px 8px}summary{cursor:pointer}.ex{font-family:ui-monospace,monospace;font-size:12px;
background:#fafafa;border-left:3px solid #ccc;padding:4px 8px;margin:4px 0;white-space:pre-wrap;word-break:break-word}
.kept{border-left-color:#4f9a5c}.dup{border-left-color:#a8443b}.grid{display:flex;flex-wrap:wrap;gap:24px}
#filter{position:sticky;top:0;background:#fff;padding:6px 0;z-index:1;border-bottom:1px solid #eee}
#q{font:inherit;padding:3px 6px;width:320px}.pair{table-layout:fixed;width:100%}.pair td{vertical-align:top;
text-align:left;width:50%}.pair th{text-align:left}.cell{max-height:220px;overflow:auto;font-family:ui-monospace,monospace;
font-size:12px;white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:4px 6px}
ins.d{background:#c8f0c8;text-decoration:none}del.d{background:#f6c6c0;text-decoration:none}
.trained{background:#fff1a8;outline:1px solid #e5cf5a}.sample{max-height:300px;overflow:auto}
"""

# Filters the items marked .f (examples, duplicate pairs) by the text typed: case-insensitive
# substring; a group (details.fg, or an "N more") with no match left is hidden, one with a match is opened.
SCRIPT = """
(function(){var q=document.getElementById('q'),n=document.getElementById('qn');
q.addEventListener('input',function(){var t=q.value.trim().toLowerCase(),shown=0,items=document.querySelectorAll('.f');
for(var i=0;i<items.length;i++){var hit=!t||items[i].textContent.toLowerCase().indexOf(t)>=0;
items[i].style.display=hit?'':'none';if(hit)shown++;}
var groups=document.querySelectorAll('details.fg,details.more');for(var j=0;j<groups.length;j++){var g=groups[j];
if(!t){g.style.display='';continue;}var any=false,m=g.querySelectorAll('.f');
for(var k=0;k<m.length;k++){if(m[k].style.display!=='none'){any=true;break;}}
g.style.display=any||g.querySelector('summary').textContent.toLowerCase().indexOf(t)>=0?'':'none';if(any)g.open=true;}
n.textContent=t?shown+' of '+items.length+' examples and pairs match':'';});})();
"""
REASON = 160  # a reason longer than this is cut, the full text in its title
PATTERN = 40  # characters of a regex shown in a reason


def short_reason(text: str) -> str:
    """A reason that fits a line: a whole regex in it (``... matches /REGEX/: 'value'``) cut to its
    start, the matched value kept; anything else still too long cut at its end."""

    m = re.match(r"(?s)(.*?\bmatches /)(.*)(/(?::\s.*)?)$", text)
    if m and len(m.group(2)) > PATTERN:
        text = f"{m.group(1)}{m.group(2)[:PATTERN - 1]}…{m.group(3)}"
    return text if len(text) <= REASON else text[:REASON - 1] + "…"


def _reason(text: str) -> str:
    text = str(text)
    short = short_reason(text)
    if short == text:
        return escape(text)
    return f"<span class='long' title='{escape(text)}'>{escape(short)}</span>"


def _more(n: int, inner: str, what: str) -> str:
    """``inner`` behind an "and N more" that opens."""
    return f"<details class='more'><summary class='muted'>and {n} more {what}</summary>{inner}</details>" if n else ""


def _diff(runs, tag: str) -> str:
    return "".join(f"<{tag} class='d'>{escape(t)}</{tag}>" if changed else escape(t) for t, changed in runs)



def _table(head: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{escape(str(c))}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def render(data: dict) -> str:
    parts = [f"<h1>Build report: {escape(data['pipeline'])}</h1>",
             f"<p class='muted'>build <code>{escape(data['build'])}</code> from <code>{escape(str(data['pipeline_file']))}"
             f"</code>; lock sha256 <code>{escape(str(data['lock_sha256'])[:16])}</code></p>"
             if not data.get("separate") else
             f"<p class='muted'>folder <code>{escape(data['build'])}</code>: step folders made by separate commands "
             "(no manifest.json: no lock, no input hashes; the steps are ordered by their input counts)</p>",
             ("<div id='filter'><input id='q' type='search' placeholder='filter examples and duplicate pairs' "
             "aria-label='filter examples and duplicate pairs'> <span id='qn' class='muted'></span></div>")]
    parts += _funnel(data)
    parts += _rejections(data)
    parts += _duplicates(data)
    parts += _scores(data)
    parts += _tokens(data)
    parts += _samples(data)
    parts += _training(data)
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in sorted(data["versions"].items()))
    parts.append(f"<p class='muted'>versions: {versions}</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{escape(data['pipeline'])}: build report</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + f"<script>{SCRIPT}</script></body></html>\n")


def _funnel(data: dict) -> list[str]:
    n0 = data["records_in"]
    bars = [("input", n0)] + [(s["step"], s["kept"]) for s in data["steps"]]
    rows = [[escape(s["step"]), s["in"], s["kept"], s["rejected"], _pct(s["kept"], n0),
             escape(str(s.get("status") or "")), _seconds(s)] for s in data["steps"]]
    inputs = ", ".join(f"<code>{escape(i['path'])}</code> ({i.get('records', '?')})" for i in data["inputs"])
    return ["<h2>Records per step</h2>", f"<p>inputs: {inputs}</p>", svg.hbars(bars),
            _table(["step", "in", "kept", "rejected", "kept of input", "this build", "stage time"], rows)]


def _seconds(s: dict) -> str:
    if s.get("status") == "cached":
        ran = s.get("ran_seconds")
        return "cached" + ("" if ran is None else f" (ran in {ran:.2f}s)")
    return "" if s["seconds"] is None else f"{s['seconds']:.2f}s"


def _rejections(data: dict) -> list[str]:
    out = ["<h2>Rejections per rule</h2>"]
    for s in data["steps"]:
        counts = sorted(((r, n) for r, n in s["rules"].items() if n), key=lambda x: (-x[1], x[0]))
        if not counts:
            continue
        out.append(f"<h3>{escape(s['step'])}: {s['rejected']} rejected</h3>")
        out.append(svg.hbars(counts))
        for rule, n in counts:
            ex = [f"<div class='ex f'><b>{escape(e['source'])}</b>: {_reason(e['reason'])}\n{escape(e['text'])}</div>"
                  for e in s["examples"].get(rule, [])]
            first, rest = ex[:EXAMPLES_PER_RULE], ex[EXAMPLES_PER_RULE:]
            more = _more(len(rest), "".join(rest), "examples") if rest else ""
            unshown = n - len(ex)
            tail = f"<p class='muted'>({unshown} more not shown in this page)</p>" if unshown > 0 else ""
            out.append(f"<details class='fg'><summary><code>{escape(rule)}</code>: {n}</summary>{''.join(first)}{more}"
                       f"{tail}</details>")
    return out if len(out) > 1 else out + ["<p>No record was rejected.</p>"]


def _duplicates(data: dict) -> list[str]:
    out = []
    for s in data["steps"]:
        d = s.get("dedup")
        if not d:
            continue
        out.append(f"<h3>{escape(s['step'])}: {s['rejected']} duplicates in {d['n_clusters']} clusters "
                   f"(largest {d['largest']})</h3>")
        for m in d["methods"]:
            extra = ", ".join(f"{k} {m[k]}" for k in ("threshold", "bands", "rows", "candidate_pairs") if k in m)
            out.append(f"<p class='muted'>{escape(m['method'])}{': ' + escape(extra) if extra else ''}</p>")
            out.extend(_semantic_extras(m))
        for c in d["clusters"]:
            pairs = [_pair(c, x) for x in c["duplicates"]]
            first, rest = pairs[:c["shown"]], pairs[c["shown"]:]
            unshown = c["more"] - len(rest)
            tail = f"<p class='muted'>({unshown} more not shown in this page)</p>" if unshown > 0 else ""
            out.append(f"<details class='fg'><summary>{escape(c['method'])} cluster of {c['size']}: kept "
                       f"<code>{escape(c.get('kept_source') or c['kept_id'][:12])}</code></summary>"
                       f"{''.join(first)}{_more(len(rest), ''.join(rest), 'duplicates')}{tail}</details>")
    return (["<h2>Duplicate clusters</h2>", ("<p class='muted'>Each record removed as a duplicate beside the kept "
             "member of its cluster, largest clusters first; the words that differ are highlighted "
             "(<del class='d'>kept only</del>, <ins class='d'>removed only</ins>).</p>")] + out) if out else []


def _pair(c: dict, x: dict) -> str:
    left, right = x["diff"]
    same = " (identical text)" if not any(ch for _, ch in left + right) else ""
    return (f"<table class='pair f'><tr><th>kept <code>{escape(str(c.get('kept_source') or c['kept_id'][:12]))}</code></th>"
            f"<th>removed <code>{escape(str(x.get('source') or x['id'][:12]))}</code> <span class='muted'>similarity "
            f"{x['similarity']:.3f}{same}</span></th></tr><tr><td><div class='cell kept'>{_diff(left, 'del')}</div></td>"
            f"<td><div class='cell dup'>{_diff(right, 'ins')}</div></td></tr></table>")


def _semantic_extras(m: dict) -> list[str]:
    """A semantic step's check, conflicts and borderline pairs side by side."""
    out = []
    failed = m.get("failed_check") or {}
    if m.get("check") == "agree":
        out.append(f"<p class='muted'>{m.get('candidate_pairs', 0)} pairs at cosine &ge; {m.get('threshold')}, "
                   f"{m.get('pairs', 0)} passed the check"
                   + (" (kept apart: " + escape(", ".join(f"{n} {k} differ" for k, n in failed.items())) + ")"
                      if failed else "") + "</p>")
    c = m.get("conflicts")
    if c:
        rows = "".join(f"<li><code>{escape(a[:12])}</code> / <code>{escape(b[:12])}</code>: "
                       + escape(f"answer {x} vs {y}" if part == "answer" else "responses differ") + "</li>"
                       for a, b, part, x, y in c["examples"][:10])
        out.append(f"<p><b>Conflicts</b>: {c['pairs']} pairs ({c['records']} records) share a prompt and disagree "
                   f"on the answer ({escape(c['action'])})</p><ul>{rows}</ul>")
    b = m.get("borderline")
    if b and any(b.get(k) for k in ("removed", "failed_check", "below")):
        rows = []
        for title, key in (("lowest removed", "removed"), ("kept apart by the check", "failed_check"),
                           ("just below", "below")):
            for r in b.get(key) or []:
                rows.append(f"<tr class='f'><td>{escape(title)}<br>{r['cosine']:.4f}<br>{escape(r['verdict'])}</td>"
                            f"<td>{escape(r['a_text'])}</td><td>{escape(r['b_text'])}</td></tr>")
        out.append(f"<details class='fg'><summary>Borderline pairs around {b['threshold']}</summary><table>"
                   "<tr><th></th><th>record a</th><th>record b</th></tr>" + "".join(rows) + "</table></details>")
    return out


def _scores(data: dict) -> list[str]:
    out = []
    for s in data["steps"]:
        sc = s.get("score")
        if not sc:
            continue
        hist = sorted((sc.get("histogram") or {}).items(), key=lambda kv: float(kv[0]))
        out.append(f"<h3>{escape(s['step'])}</h3>")
        out.append(svg.histogram([], counts=hist, label="jury score"))
        rows = [[escape(name), escape(f"{j['backend']} {j['model']}"), j["scored"], j["failed"], j["cache_hits"],
                 escape(", ".join(f"{k} {v}" for k, v in j["failures"].items()))] for name, j in (sc.get("judges") or {}).items()]
        out.append(_table(["judge", "model", "scored", "failed", "from cache", "failures"], rows))
        agree = sc.get("agreement") or {}
        pairs = [[escape(f"{p['a']} ~ {p['b']}"), p["n"], f"{p['exact']:.2f}", f"{p['within_one']:.2f}"]
                 for p in agree.get("pairs", []) if p.get("n")]
        if pairs:
            out.append(_table(["judges", "records", "exact", "within one"], pairs))
        if agree.get("krippendorff_alpha_ordinal") is not None:
            out.append(f"<p>Krippendorff's alpha (ordinal): {agree['krippendorff_alpha_ordinal']:.3f}</p>")
    return ["<h2>Scores</h2>"] + out if out else []


def _tokens(data: dict) -> list[str]:
    out = []
    for s in data["steps"]:
        t = s.get("tokens")
        if not t:
            continue
        st = t["stats"]
        line = ""
        if st:
            n, tr = st["n_tokens"], st["n_train_tokens"]
            budget = "" if t["max_tokens"] is None else f", budget {t['max_tokens']} tokens"
            line = (f"<p>tokens per record p50 {n['p50']:.0f}, p95 {n['p95']:.0f}, max {n['max']}; trained p50 "
                    f"{tr['p50']:.0f}, p95 {tr['p95']:.0f}; {st['share_trained']:.1%} of tokens trained. "
                    f"Split: {escape(', '.join(f'{k} {v}' for k, v in t['split'].items()))}. Template "
                    f"<code>{escape(str(t['template']))}</code>, tokenizer <code>{escape(str(t['tokenizer']))}</code>"
                    f"{budget}.</p>")
        out += [f"<h3>{escape(s['step'])}</h3>", line, "<div class='grid'>",
                svg.histogram(t["n_tokens"], width=460, label="tokens per record"),
                svg.histogram(t["n_train_tokens"], width=460, label="trained (assistant) tokens per record"), "</div>"]
    return ["<h2>Token lengths</h2>"] + out if out else []


def _samples(data: dict) -> list[str]:
    out = []
    for s in data["steps"]:
        for r in s.get("samples") or []:
            text, at, html = r["text"], 0, []
            for a, b in r["spans"]:
                html.append(escape(text[at:a]) + f"<span class='trained'>{escape(text[a:b])}</span>")
                at = b
            html.append(escape(text[at:]) + ("…" if r["cut"] else ""))
            out.append(f"<div class='ex sample f'><b>{escape(str(r['source']))}</b> <span class='muted'>({escape(s['step'])}: "
                       f"{r['n_tokens']} tokens, {r['n_train_tokens']} trained"
                       f"{'' if r['exact'] else '; marked: approximately'})</span>\n{''.join(html)}</div>")
    if not out:
        return []
    exact = [r["exact"] for s in data["steps"] for r in s.get("samples") or []]
    how = ("the characters trained on, as the format step finds them (its template and tokenizer applied "
           "again here: each assistant turn's content and its closing token)" if all(exact) else
           "the assistant turns' content, found in the text: an approximation of the trained tokens (the step "
           "does not store its spans, and its tokenizer could not be loaded here" + (" for some records" if any(exact)
                                                                                  else "") +
           "; it also trains each turn's closing token, not marked, and no turn weighted 0)")
    return ["<h2>Kept records as trained</h2>", ("<p class='muted'>A few training records as the format step "
            "rendered them (its <code>text</code> column, the chat template applied). <span class='trained'>Marked"
            f"</span>: {escape(how)}.</p>")] + out


def _training(data: dict) -> list[str]:
    out = []
    for r in data["training"]:
        out.append(f"<h3><code>{escape(r['folder'])}</code>: {escape(str(r['method']))} on {escape(str(r['model']))}</h3>")
        if r["eval_before"] is not None:
            out.append(f"<p>eval loss {r['eval_before']:.4f} before training, {r['eval_after']:.4f} after "
                       f"(best {r['eval_best']:.4f}).</p>")
        out.append(svg.lines({"train loss": r["train_loss"], "eval loss": r["eval_loss"]}))
    return ["<h2>Training on this build</h2>"] + out if out else []
