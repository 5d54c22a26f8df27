"""The GPU kit's Markdown: bench/gpu.py's JSON as the tables the README's CUDA section takes.
Standard library only (it runs before anything is installed). Every figure comes from the
JSON; a check that did not run shows its recorded reason instead."""
from __future__ import annotations

GIB = 2**30
# train sft kinds and the plain-script kind each is measured against
AGAINST = {"ours_lora": "plain_lora", "ours_lora_packed": "plain_lora", "ours_qlora": "plain_lora",
           "ours_full": "plain_full", "ours_full_packed": "plain_full"}
LABELS = {"plain_lora": "plain TRL script, LoRA (TRL defaults)", "ours_lora": "train sft, LoRA",
          "ours_lora_packed": "train sft, LoRA, packed (equal tokens/step)", "ours_qlora": "train sft, QLoRA",
          "plain_full": "plain TRL script, full (TRL defaults)", "ours_full": "train sft, full",
          "ours_full_packed": "train sft, full, packed (equal tokens/step)"}


def _f(x, fmt="{:.0f}"):
    return "-" if x is None else fmt.format(x)


def _why(entry: dict) -> str:
    return entry.get("skipped") or entry.get("error") or "not run"


def throughput(check: dict) -> list[str]:
    r = check.get("result") or {}
    runs = r.get("runs", {})
    head = (f"{r.get('shape', '?')} shape ({_f(r.get('parameters'), '{:,}')} parameters, random weights), "
            f"batch {r.get('batch', '?')} conversations of mean {_f(r.get('mean_tokens'))} tokens, "
            f"{r.get('steps', '?')} steps, the first {r.get('warmup', '?')} untimed")
    lines = [head, "", "| run | rows/step | tokens/step | tokens/s | vs plain | peak GiB |", "|---|---:|---:|---:|---:|---:|"]
    for kind, e in runs.items():
        if "tokens_per_s" not in e:
            lines.append(f"| {LABELS.get(kind, kind)} | {e.get('rows_per_step', '-')} | | | | {_why(e)} |")
            continue
        base = runs.get(AGAINST.get(kind, ""), {})
        ratio = e["tokens_per_s"] / base["tokens_per_s"] if base.get("tokens_per_s") else None
        peak = e.get("peak_bytes")
        lines.append(f"| {LABELS.get(kind, kind)} | {e['rows_per_step']} | {e['tokens_per_step']:.0f} | "
                     f"{e['tokens_per_s']:.0f} | {_f(ratio, '{:.2f}x')} | {_f(peak and peak / GIB, '{:.1f}')} |")
    return lines


def memory(checks: dict) -> list[str]:
    lines = ["| shape | run | plan GiB | measured peak GiB | measured / plan |", "|---|---|---:|---:|---:|"]
    for name, check in checks.items():
        if not name.startswith("train-"):
            continue
        r = check.get("result") or {}
        for kind, e in r.get("runs", {}).items():
            if not kind.startswith("ours_"):
                continue
            plan = e.get("plan_bytes")
            if e.get("device") == "cuda" and e.get("measured_bytes"):
                lines.append(f"| {r['shape']} | {LABELS[kind]} | {plan / GIB:.2f} | {e['measured_bytes'] / GIB:.2f} | "
                             f"{e['measured_bytes'] / plan:.2f} |")
            else:
                why = "CUDA required (on a CPU the peak is process RSS)" if e.get("device") == "cpu" else _why(e)
                lines.append(f"| {r.get('shape')} | {LABELS[kind]} | {_f(plan and plan / GIB, '{:.2f}')} | {why} | |")
    return lines


def embedding(check: dict) -> list[str]:
    r = check.get("result") or {}
    cpu, gpu, match = r.get("cpu", {}), r.get("gpu", {}), r.get("match")
    lines = [f"model: {r.get('model', '?')} ({r.get('weights', '?')} weights), threshold {_f(r.get('threshold'), '{:.4f}')}",
             "", "| device | batch | records | records/s |", "|---|---:|---:|---:|"]
    for e in (cpu, gpu):
        if "records_per_s" in e:
            lines.append(f"| {e['device']} | {e['batch']} | {e['records']} | {e['records_per_s']:.0f} |")
        elif e:
            lines.append(f"| gpu | | | {_why(e)} |")
    if r.get("speedup"):
        lines += ["", f"GPU / CPU: {r['speedup']:.1f}x"]
    if match:
        lines += ["", f"decisions on the same {r['records_compared']} records: "
                      f"{'identical' if match['same_decisions'] else 'DIFFERENT'} (kept CPU {match['cpu_kept']}, "
                      f"GPU {match['gpu_kept']}; pairs CPU {match['cpu_pairs']}, GPU {match['gpu_pairs']}; "
                      f"largest vector difference {match['max_abs_vector_diff']:.2e})"]
    return lines


def efficacy(check: dict) -> list[str]:
    r = check.get("result") or {}
    res = r.get("results", {})
    lines = [f"model: {r.get('model', '?')} ({r.get('method', '?')}); {r.get('train', '?')} clean problems corrupted "
             f"into {r.get('raw_records', '?')}, curated keeps {r.get('curated_records', '?')}; {r.get('steps', '?')} "
             f"steps x batch {r.get('batch', '?')} each; {r.get('eval', '?')} held-out questions; 95% bootstrap intervals",
             "", "| model | exact match | loss (answer tokens) | refusals | mean length |", "|---|---:|---:|---:|---:|"]
    for name in ("base", "raw", "curated"):
        e = res.get(name)
        if not e:
            lines.append(f"| {name} | not measured | | | |")
            continue
        em, loss = e["exact_match"], e["loss"]
        lines.append(f"| {name} | {em['value']:.1%} [{em['ci95'][0]:.1%}, {em['ci95'][1]:.1%}] | "
                     f"{loss['value']:.4f} [{loss['ci95'][0]:.4f}, {loss['ci95'][1]:.4f}] | {e['refusal']:.1%} | "
                     f"{e['mean_length']:.1f} |")
    diff = res.get("curated_minus_raw")
    if diff:
        em, loss = diff["exact_match"], diff["loss"]
        lines += ["", f"curated - raw (paired): exact match {em['value']:+.1%} [{em['ci95'][0]:+.1%}, "
                      f"{em['ci95'][1]:+.1%}], loss {loss['value']:+.4f} [{loss['ci95'][0]:+.4f}, {loss['ci95'][1]:+.4f}]"]
    return lines


def status(check: dict) -> str:
    if check.get("skipped"):
        return f"skipped: {check['skipped']}"
    s = f"{check.get('status', '?')} in {check.get('seconds', '?')} s"
    return s + (f" ({check['error']})" if check.get("error") else "")


def markdown(results: dict) -> str:
    env = results.get("env", {})
    checks = results.get("checks", {})
    out = [f"# GPU kit results ({results.get('mode', '?')} mode)", "",
           f"{results.get('started', '?')}; {env.get('gpu') or 'no GPU'}"
           + (f" (driver {env['driver']}, CUDA {env.get('torch_cuda')})" if env.get("driver") else "")
           + f"; {env.get('cpus', '?')} CPUs; "
           f"Python {env.get('python', '?')}; "
           + ", ".join(f"{k} {v}" for k, v in sorted(env.get("versions", {}).items())), ""]
    if results.get("install"):
        out += [f"install: {status(results['install'])}", ""]
    out += ["| check | status |", "|---|---|"] + [f"| {n} | {status(c)} |" for n, c in checks.items()] + [""]
    out += ["## Throughput: train sft against a plain TRL script", ""]
    for name, check in checks.items():
        if name.startswith("train-"):
            out += throughput(check) + [""]
    out += [f"flash-attention varlen: {env.get('flash_attn') or env.get('flash_attn_note') or 'not installed'}; "
            "packed runs used "
            + ("flash-attention 2" if env.get("flash_attn") else "segment SDPA (packing.segment_attention)"), "",
            "For scale: torchtune reports about 3,100 tokens/s for Llama-3.1-8B LoRA on one RTX 4090.", ""]
    out += ["## Memory plan against the CUDA peak (torch.cuda.max_memory_allocated after 2 steps)", ""]
    out += memory(checks) + [""]
    out += ["## Semantic-dedup embeddings", ""] + embedding(checks.get("embed", {})) + [""]
    out += ["## Does curation pay", ""] + efficacy(checks.get("efficacy", {})) + [""]
    return "\n".join(out)
