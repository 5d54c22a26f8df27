"""The ``curate`` command: thin wrappers over the library (parse, validate, call, print)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from . import stages, startup, walltime
from .cliopts import SuggestingChoice, StageCommand, compression_option, stage_command


class UserError(click.ClickException):
    """A user mistake: one line on stderr, exit status 2, never a traceback."""

    exit_code = 2


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        target, sep, column = p.partition("=")
        if not sep or not target or not column:
            raise UserError(f"--map expects FIELD=COLUMN, got '{p}'")
        out[target.strip()] = column.strip()
    return out


def _user_errors(fn):
    """Turn the library's user-facing exceptions into one-line exits."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .config import ConfigError
        from .readers import InputError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, InputError) as e:
            raise UserError(str(e)) from None
        except OSError as e:  # unwritable output, a file where a folder should be, ...
            raise UserError(f"{e.filename or ''}: {e.strerror or e}".lstrip(": ")) from None
        except MemoryError:  # anywhere: one line, not a traceback
            raise UserError("out of memory: the inputs need more memory than this process may use") from None

    return wrapper


class _Commands(click.Group):
    """The commands, and one made for each registered stage without a command of its own
    (curate.stages): ``curate NAME INPUT... -o OUT`` with the stage's options."""

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(stages.names()))

    def get_command(self, ctx, name):
        cmd = super().get_command(ctx, name)
        if cmd is None and name in stages.names():
            cmd = _stage_cmd(name)
            _suggesting(cmd)
        return cmd


@click.group(cls=_Commands)
@click.version_option(package_name="sft-curate")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress lines nor timing summaries on stderr (progress shows only on a terminal anyway).")
def main(quiet):
    """Curate raw instruction and chat data into a clean SFT dataset."""
    from .progress import set_quiet

    set_quiet(quiet)


def read_options(f):
    f = click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where to run: this process, or Ray Data (RAY_ADDRESS, else a local Ray instance).")(f)
    f = click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN",
                     help="Read a format field from another column, e.g. --map instruction=query.")(f)
    f = click.option("--format", "fmt", default=None, metavar="NAME",
                     help="Force an input format: openai, sharegpt, alpaca, prompt_completion, qa.")(f)
    return f


def _stage_cmd(kind: str, doc: str | None = None) -> click.Command:
    """The command of a stage that needs nothing of its own (filter, and any stage registered
    later): run it, print its rule table. Its help: ``doc``, else the stage class's docstring
    (which imports the stage: ``curate --help`` gives the built-ins' help here, so it stays instant)."""
    doc = doc or " ".join((type(stages.get(kind)).__doc__ or f"Run the {kind} stage.").split())

    @click.command(kind, cls=StageCommand, stage=kind, help=doc)
    @click.argument("inputs", nargs=-1, required=True)
    @click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
    @read_options
    @compression_option()
    @_user_errors
    def command(inputs, out, options, fmt, mapping, engine, compression):
        from .api import stage_inputs

        stats = stage_inputs(kind, list(inputs), out, options, fmt, _mapping(mapping), engine, compression)
        walltime.record(out, stats)  # start-up, reading and writing included
        _print_table(stats)
        click.echo(f"wrote {out}/kept.parquet ({stats['kept']}), rejected.parquet ({stats['rejected']}), stats.json")

    return command


filter_cmd = _stage_cmd("filter", "Apply rule sets to INPUT... and write OUT/kept.parquet, rejected.parquet, stats.json.")
main.add_command(filter_cmd)


def _print_table(stats: dict) -> None:
    _notes(stats.get("notices", []))
    total = max(stats["in"], 1)
    fired = stats.get("fired", {})
    rows = [(name, fired.get(name, n), n) for name, n in stats["rules"].items()]
    width = max([len(r[0]) for r in rows] + [10])
    click.echo(f"{'rule':<{width}}  {'fired':>7}  {'rejected':>8}  {'share':>6}")
    for name, f, n in rows:
        click.echo(f"{name:<{width}}  {f:>7}  {n:>8}  {100 * n / total:>5.1f}%")
    click.echo(f"{'in':<{width}}  {'':>7}  {stats['in']:>8}")
    click.echo(f"{'kept':<{width}}  {'':>7}  {stats['kept']:>8}  {100 * stats['kept'] / total:>5.1f}%")


@stage_command(main, "dedup")
@click.argument("inputs", nargs=-1, required=False)
@click.option("-o", "--out", default=None, type=click.Path(file_okay=False), help="Output folder (required but with --calibrate).")
@click.option("--calibrate", "pairs_file", default=None, type=click.Path(dir_okay=False),
              help="Semantic: PAIRS.jsonl of {a, b, duplicate: true|false}; print precision and recall per "
                   "threshold and the threshold for --target-precision (no INPUTS, nothing written).")
@click.option("--target-precision", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="With --calibrate: the precision the suggested threshold must reach.")
@read_options
@compression_option()
@_user_errors
def dedup_cmd(inputs, out, options, pairs_file, target_precision, fmt, mapping, engine, compression):
    """Remove exact and near duplicates; writes OUT/kept, rejected, clusters.parquet and stats.json."""
    from .api import stage_inputs

    if pairs_file:
        return _calibrate(pairs_file, options, target_precision)
    if not inputs or not out:
        raise UserError("give INPUTS to deduplicate and -o OUT (or --calibrate PAIRS.jsonl)")
    stats = stage_inputs("dedup", list(inputs), out, options, fmt, _mapping(mapping), engine, compression)
    walltime.record(out, stats)  # start-up, reading and writing included
    _print_table(stats)
    for m in stats["methods"]:
        extra = "".join(f", {k} {m[k]}" for k in ("threshold", "bands", "rows", "candidate_pairs") if k in m)
        click.echo(f"{m['method']}: {m['rejected']} duplicates in {m['clusters']} clusters{extra}")
        if m["method"] == "semantic":
            _print_semantic(m)
    click.echo(f"wrote {out}/kept.parquet ({stats['kept']}), rejected.parquet ({stats['rejected']}), clusters.parquet, stats.json")


def _print_semantic(m: dict) -> None:
    failed = m.get("failed_check") or {}
    if m.get("check") == "agree":
        click.echo(f"  {m['candidate_pairs']} pairs at cosine >= {m['threshold']}; {m['pairs']} passed the check"
                   + (" (kept apart: " + ", ".join(f"{n} {k} differ" for k, n in failed.items()) + ")" if failed else ""))
    if m.get("boilerplate_lines"):
        click.echo(f"  {m['boilerplate_lines']} boilerplate lines left out of the embedded text of "
                   f"{m['boilerplate_stripped']} records")
    if m.get("pieced"):
        click.echo(f"  {m['pieced']} texts longer than the {m['max_tokens']} tokens the model reads were embedded "
                   f"in pieces" + (f"; of {m['truncated']} the middle was not read" if m.get("truncated") else ""))
    c = m.get("conflicts")
    if c:
        what = "rejected (dedup.conflict)" if c["action"] == "reject" else "kept, listed in stats.json"
        click.echo(f"conflicts: {c['pairs']} pairs ({c['records']} records) have the same prompt and disagreeing "
                   f"answers: {what}")
        for a, b, part, x, y in c["examples"][:3]:
            click.echo(f"  {_shown(a)} / {_shown(b)}: " + (f"answer {_shown(x)} vs {_shown(y)}" if part == "answer"
                                                            else "responses differ"))
    b = m.get("borderline")
    if b and any(b.get(k) for k in ("removed", "failed_check", "below")):
        click.echo(f"borderline pairs (threshold {b['threshold']}), the text that was embedded side by side:")
        for title, key in (("lowest removed", "removed"), ("above the threshold, kept apart by the check",
                                                            "failed_check"), ("just below the threshold", "below")):
            for row in b.get(key) or []:
                _side_by_side(title, row)


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1


def _shown(text) -> str:
    """Record text as the terminal may show it: control characters (ESC, BEL, C1 ...; a
    record's escape sequence could retitle, clear or script the user's terminal) as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _side_by_side(title: str, row: dict, width: int = 48, lines: int = 3) -> None:
    import textwrap

    click.echo(f"  [{title}] cosine {row['cosine']:.4f}: {row['verdict']}  ({_shown(row['a'])} | {_shown(row['b'])})")
    left = textwrap.wrap(_shown(row["a_text"]), width)[:lines]
    right = textwrap.wrap(_shown(row["b_text"]), width)[:lines]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        click.echo(f"    {a:<{width}} | {right[i] if i < len(right) else ''}")


def _calibrate(pairs_file: str, options: dict, target: float) -> None:
    from .api import stage_options
    from .dedup.calibrate import calibrate

    cfg = stage_options("dedup", {**options, "methods": ["semantic"]})
    report = calibrate(pairs_file, cfg, target)
    click.echo(f"{report['pairs']} labelled pairs, {report['duplicates']} duplicates; --on {report['on']}, "
               f"check {report['check']} ({report['failed_check']} pairs fail it)")
    click.echo(f"{'threshold':>9}  {'removed':>7}  {'correct':>7}  {'precision':>9}  {'recall':>6}")
    for r in report["rows"]:
        p = "-" if r["precision"] is None else f"{r['precision']:.3f}"
        rc = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        click.echo(f"{r['threshold']:>9.2f}  {r['removed']:>7}  {r['true']:>7}  {p:>9}  {rc:>6}")
    if report["threshold"] is None:
        click.echo(f"no threshold reaches precision {target} on these pairs")
    else:
        click.echo(f"threshold for precision >= {target} with the most recall: {report['threshold']}")


@stage_command(main, "format")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@read_options
@compression_option()
@_user_errors
def format_cmd(inputs, out, options, fmt, mapping, engine, compression):
    """Render with a chat template, check the loss mask, budget tokens, split train/eval."""
    from .api import stage_inputs

    stats = stage_inputs("format", list(inputs), out, options, fmt, _mapping(mapping), engine, compression)
    walltime.record(out, stats)  # start-up, reading and writing included
    _print_table(stats)
    tokens = stats.get("tokens") or {}
    if tokens:
        n, t = tokens["n_tokens"], tokens["n_train_tokens"]
        click.echo(f"tokens per record p50 {n['p50']:.0f}, p95 {n['p95']:.0f}, max {n['max']}; trained p50 "
                   f"{t['p50']:.0f}, p95 {t['p95']:.0f}, max {t['max']}; {tokens['share_trained']:.1%} of tokens trained")
    click.echo(f"template {stats['template']}; train {stats['train']}, eval {stats['eval']}")
    if options["max_tokens"] is None and tokens:
        click.echo(f"note: no --max-tokens: no token budget recorded; train sft will take max_length "
                   f"{max(2048, tokens['n_tokens']['max'])} (the larger of 2048 and the longest record) unless its "
                   "config sets one")
    added = stats.get("template_system")
    if added:  # visible otherwise only in the Parquet text column
        click.echo(f"note: the template adds a system prompt the data does not have to {added['records']} records "
                   f"(those without a system turn): \"{added['text']}\"; --system none leaves it out, "
                   "--system \"TEXT\" puts yours instead")
    if not stats.get("template_markers", True):
        click.echo("note: the template has no {% generation %} markers and none could be added; the masks above come "
                   "from prefix rendering, but OUT/template.jinja cannot drive TRL's assistant_only_loss: pass "
                   "--template with a marked copy for training (a family name takes TRL's: --template gemma3 is "
                   "gemma3_training; see docs/templates.md)")
    click.echo(f"wrote {out}/train.jsonl, eval.jsonl, train.parquet, eval.parquet, template.jinja, stats.json")


@stage_command(main, "score")
@click.argument("inputs", nargs=-1)
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Output folder.")
@click.option("--dry-run", is_flag=True, help="Print the calls each judge would make and what is cached; send nothing.")
@click.option("--calibrate", "labels", default=None, type=click.Path(),
              help="Compare the jury with human scores in this file instead of scoring INPUT.")
@click.option("--label-field", default="human_score", show_default=True, help="The human score's field in --calibrate.")
@read_options
@compression_option()
@_user_errors
def score_cmd(inputs, out, options, dry_run, labels, label_field, fmt, mapping, engine, compression):
    """Score records with a jury of LLM judges; writes OUT/kept, rejected.parquet and stats.json."""
    from . import api

    if labels:
        if inputs:
            raise UserError("--calibrate takes its records from the labels file; give no INPUT")
        _print_calibration(api.calibrate(labels, options["jury"], label_field, options["cache"]))
        return
    if not inputs:
        raise UserError("missing INPUT (or --calibrate LABELS)")
    if dry_run:
        plan = api.score_plan(list(inputs), options, fmt, _mapping(mapping))
        _warn(plan["warnings"])
        click.echo(f"{plan['records']} records")
        for name, p in plan["judges"].items():
            approx = "" if p["tokens_exact"] else "~"
            click.echo(f"judge {name} ({p['backend']} {p['model']}): {p['calls']} calls to make, {p['cached']} cached, "
                       f"{approx}{p['tokens_in']} input tokens" + (f", at most {p['max_tokens_out']} output tokens"
                                                                  if p["max_tokens_out"] else ""))
        return
    if not out:
        raise UserError("missing -o/--out")
    stats = api.stage_inputs("score", list(inputs), out, options, fmt, _mapping(mapping), engine, compression)
    walltime.record(out, stats)  # start-up, reading and writing included
    _warn(stats["warnings"])
    _print_table(stats)
    for name, a in stats["judges"].items():
        fails = ", ".join(f"{k} {v}" for k, v in a["failures"].items())
        lat = a["latency_s"]
        timing = f", latency p50 {lat['p50']:.3f}s p95 {lat['p95']:.3f}s" if lat["p50"] is not None else ""
        click.echo(f"judge {name} ({a['backend']} {a['model']}): {a['scored']} scored, {a['failed']} failed"
                   + (f" ({fails})" if fails else "") + f"; {a['calls']} calls, {a['cache_hits']} cached{timing}")
    agree = stats["agreement"]
    for p in agree["pairs"]:
        if p["n"]:
            click.echo(f"agreement {p['a']}~{p['b']}: exact {p['exact']:.2f}, within one {p['within_one']:.2f} (n={p['n']})")
    if agree["krippendorff_alpha_ordinal"] is not None:
        click.echo(f"Krippendorff's alpha (ordinal): {agree['krippendorff_alpha_ordinal']:.3f}")
    click.echo(f"wrote {out}/kept.parquet ({stats['kept']}), rejected.parquet ({stats['rejected']}), stats.json")


def _notes(lines):
    for line in lines:
        click.echo(f"note: {line}", err=True)


def _warn(lines):
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def _print_calibration(report: dict) -> None:
    click.echo(f"{report['records']} labelled records" + (f" ({report['unlabelled']} without a label, skipped)"
                                                          if report["unlabelled"] else ""))
    click.echo(f"{'judge':<16} {'n':>5} {'exact':>6} {'±1':>6} {'spearman':>9} {'kappa_w':>8}")
    rows = list(report["judges"].items()) + [("(jury)", report["jury"])]
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    for name, r in rows:
        click.echo(f"{name:<16} {r['n']:>5} {fmt(r['exact']):>6} {fmt(r['within_one']):>6} "
                   f"{fmt(r['spearman']):>9} {fmt(r['kappa_quadratic']):>8}")
    click.echo("for scale: human raters agree with each other about 80% of the time (MT-Bench, Zheng et al. 2023); "
               "a jury far below that should not gate your data")


@main.command("run")
@click.argument("pipeline", type=click.Path())
@click.option("--force", is_flag=True, help="Rerun every step, cached or not.")
@click.option("--from", "from_step", default=None, metavar="STEP",
              help="Rerun from this step on (a number, a name like 03-dedup, or a kind used once).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="Override the pipeline's engine (outputs are the same bytes on both).")
@compression_option(None, "Override the pipeline's compression: the codec of its Parquet files (zstd, zstd:N, lz4, "
                          "snappy, gzip[:N], brotli[:N], none). Steps built with another one run again; the lock "
                          "stays the same.")
@_user_errors
def run_cmd(pipeline, force, from_step, engine, compression):
    """Build PIPELINE (a YAML file) step by step, reusing unchanged steps; writes its .lock file."""
    from .pipeline import build, lock_path

    path = lock_path(pipeline)
    before = path.read_bytes() if path.is_file() else None
    lock = build(Path(pipeline), force=force, from_step=from_step, engine=engine, compression=compression,
                 echo=click.echo)
    first, last = lock["steps"][0], lock["steps"][-1]
    what = f"{path} unchanged" if before is not None and path.read_bytes() == before else f"wrote {path}"
    click.echo(f"{first['in']} records in, {last['kept']} out; {what}; wrote {_output_of(pipeline)}/manifest.json")


def _output_of(pipeline) -> str:
    from .pipeline import load_pipeline

    return load_pipeline(pipeline).output


@main.command("verify")
@click.argument("pipeline", type=click.Path())
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="Rebuild on this engine instead of the pipeline's.")
@click.option("--embeddings", type=click.Choice(["replay", "recompute"]), default="replay", show_default=True,
              help="Replay the vectors in the embedding stores the steps name (read only), or compute them all again.")
@compression_option(None, "Rebuild with this Parquet codec instead of the pipeline's (none: faster to write); "
                          "the verdict is the same.")
@_user_errors
def verify_cmd(pipeline, engine, embeddings, compression):
    """Rebuild PIPELINE from its inputs (judge cache and named embedding stores replayed) and compare with its
    lock: exit 0 when identical or when only float values moved within tolerance, 1 when a decision differs."""
    from .pipeline import lock_path, verify

    verdict = verify(Path(pipeline), echo=click.echo, embeddings=embeddings, engine=engine, compression=compression)
    if not verdict.ok:
        click.echo(f"{lock_path(pipeline)}: the rebuild differs from the lock:", err=True)
        for line in verdict.lines + verdict.hints:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    if verdict.kind == "identical":
        click.echo(f"ok: the rebuild matches {lock_path(pipeline)} (identical)")
    else:
        click.echo(f"ok: the rebuild matches {lock_path(pipeline)} within tolerance: {verdict.lines[0]}")
    for line in verdict.hints:
        click.echo(f"  {line}")


@main.command("report")
@click.argument("build", type=click.Path(file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--train", "train_dirs", multiple=True, type=click.Path(file_okay=False),
              help="A training run to show (repeatable; default: runs in or beside BUILD that trained on it).")
@_user_errors
def report_cmd(build, out, train_dirs):
    """Write one self-contained HTML page about BUILD (a `curate run` output folder, a folder of step
    folders made by separate commands, or one step folder) and print its gist."""
    from .report import write_report

    for line in write_report(build, out, list(train_dirs) or None):
        click.echo(line)
    click.echo(f"wrote {out}")


@main.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@_user_errors
def validate_cmd(files):
    """Check config files (rule sets, juries); one line per file, exit 2 on the first bad one."""
    from .api import validate_file

    for f in files:
        click.echo(f"ok  {f}: {validate_file(Path(f))}")


@main.command("export")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", "dest", default=None, type=click.Path(dir_okay=False),
              help="Output file: .jsonl (one record a line) or .json (an array).")
@click.option("--to", "dest_old", default=None, type=click.Path(dir_okay=False), hidden=True)  # the old -o
@click.option("--layout", type=click.Choice(["openai", "alpaca", "sharegpt"]), default=None,
              help="The records' layout in the output file.  [default: openai]")
# --format means the input format everywhere else; kept working for one release
@click.option("--format", "layout_old", type=click.Choice(["openai", "alpaca", "sharegpt"]), default=None, hidden=True)
@_user_errors
def export_cmd(inputs, dest, dest_old, layout, layout_old):
    """Write the kept records of a stage folder (or any input) for people and other trainers."""
    from .api import export

    if dest and dest_old and dest != dest_old:
        raise UserError("give the output file once, with -o/--out")
    dest = dest or dest_old
    if not dest:
        raise UserError("missing -o/--out")
    if layout_old:
        _notes(["export --format is now --layout (--format names the input format in the other commands); "
                "--format will stop working for export in the next release"])
        if layout and layout != layout_old:
            raise UserError("give the layout once, with --layout")
    fmt = layout or layout_old or "openai"
    done = export(list(inputs), dest, fmt)
    _notes(done["notices"])
    skipped = done["skipped"]
    if skipped:  # unreadable input records: say so, never silently fewer
        per_rule = ", ".join(f"{rule} {n}" for rule, n in skipped.items())
        click.echo(f"skipped {sum(skipped.values())} unreadable records ({per_rule}); "
                   "`curate filter` writes them to rejected.parquet with file, line and reason")
    click.echo(f"wrote {done['written']} records to {dest} ({fmt})")


def suggest_choices(group: click.Group) -> None:
    """Give every Choice option of the group's commands a "did you mean"; done here, once, so that
    commands (and options) added later get it without each option spelling it."""
    for command in group.commands.values():
        _suggesting(command)


def _suggesting(command: click.Command) -> None:
    for param in command.params:
        if type(param.type) is click.Choice:
            param.type = SuggestingChoice(param.type.choices, case_sensitive=param.type.case_sensitive)


suggest_choices(main)


def run(args=None) -> None:
    """The console command (``curate``, ``python -m curate.cli``): ``main``, without numba's
    optional scipy and cffi imports, loading cached kernels without numba's context refresh,
    without numpy's huge-page advice, and without Python's module teardown at the end
    (curate.startup)."""
    startup.skip_numba_extras()
    startup.lean_numba_cache()
    startup.no_numpy_hugepages()
    try:
        main(args)
    except SystemExit as e:  # click's standalone main always ends with one
        startup.exit_now(e.code)


if __name__ == "__main__":  # pragma: no cover
    run()
