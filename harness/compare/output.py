"""A comparison as terminal text, Markdown (CI summaries), JUnit XML and JSON."""

from __future__ import annotations

import json
import time
from xml.sax.saxutils import escape, quoteattr

from harness.compare.core import CHECKS, Comparison, Finding


def _runs_line(side: str, c: Comparison) -> str:
    g = c.base if side == "BASE" else c.new
    ids = g.ids
    shown = ", ".join(ids[:3]) + (f", … ({len(ids) - 3} more)" if len(ids) > 3 else "")
    return f"{side} {g.label!r}: {len(ids)} run(s): {shown}"


def _counts(c: Comparison) -> str:
    per = {k: sum(1 for f in c.changes if f.check == k) for k in CHECKS}
    return ", ".join(f"{n} {k}" for k, n in per.items() if n)


def to_text(c: Comparison, verbose: bool = False) -> str:
    lines = [_runs_line("BASE", c), _runs_line("NEW", c)]
    lines += [f"warning: {w}" for w in c.warnings]
    for f in c.changes:
        lines.append(f"  CHANGED  {f.check:<8} {f.summary}  [{f.test}]")
        if f.noise or f.note:
            lines.append(f"           {'':<8} " + "; ".join(x for x in (f.noise, f.note) if x))
    notes = [f for f in c.findings if not f.changed and f.note]
    for f in notes:
        lines.append(
            f"  note     {f.check:<8} {f.summary}" + (f" ({f.note})" if f.note not in f.summary else "")
        )
    if verbose:
        for f in c.findings:
            if not f.changed and not f.note:
                lines.append(f"  same     {f.check:<8} {f.summary}" + (f"  ({f.noise})" if f.noise else ""))
    n_same = sum(1 for f in c.findings if not f.changed)
    if c.changed:
        lines.append(
            f"harness: behaviour changed: {len(c.changes)} change(s) beyond tolerance ({_counts(c)}); "
            f"{n_same} check(s) unchanged"
        )
    else:
        lines.append(f"harness: no change beyond tolerance ({len(c.findings)} checks)")
    return "\n".join(lines)


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(c: Comparison) -> str:
    o = c.options
    head = "❌ behaviour changed" if c.changed else "✅ no change beyond tolerance"
    out = [
        f"## harness compare: {head}",
        "",
        f"- **BASE** `{_md_cell(c.base.label)}`: {len(c.base.ids)} run(s)",
        f"- **NEW** `{_md_cell(c.new.label)}`: {len(c.new.ids)} run(s)",
        f"- times judged against each side's as-run window; tolerances: time ±{o.tolerance_seconds:g} s, "
        f"outcome share {o.tolerance_share:g}, alpha {o.alpha:g}, statistical tests from {o.min_repeats} "
        f"runs per side, a position shift must exceed {o.min_effect:g} x the spread within a side",
        "",
    ]
    out += [f"> warning: {_md_cell(w)}" for w in c.warnings]
    if c.warnings:
        out.append("")
    if c.changes:
        out += [
            "| check | what | BASE | NEW | test | p | noise within a side |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in c.changes:
            p = f"{f.p_value:.3g}" if f.p_value is not None else ""
            out.append(
                f"| {f.check} | {_md_cell(f.name)} | {_md_cell(f.base)} | {_md_cell(f.new)} | "
                f"{_md_cell(f.test)} | {p} | {_md_cell(f.noise)} |"
            )
        out.append("")
    rest = [f for f in c.findings if not f.changed]
    if rest:
        out += [f"<details><summary>{len(rest)} unchanged checks</summary>", ""]
        out += [f"- {f.check}: {_md_cell(f.summary)}" + (f" *({f.note})*" if f.note else "") for f in rest]
        out += ["", "</details>", ""]
    return "\n".join(out)


def _case(f: Finding) -> str:
    name = quoteattr(f.name)
    cls = quoteattr(f"harness.compare.{f.check}")
    out = escape(
        f"BASE: {f.base}\nNEW: {f.new}\ntest: {f.test}"
        + (f"\np: {f.p_value:.4g}" if f.p_value is not None else "")
        + (f"\nnoise: {f.noise}" if f.noise else "")
        + (f"\nnote: {f.note}" if f.note else "")
    )
    body = ""
    if f.changed:
        body = (
            f"<failure message={quoteattr(f.summary)} type={quoteattr(f.check)}>{escape(f.summary)}</failure>"
        )
    return f"  <testcase classname={cls} name={name}>{body}<system-out>{out}</system-out></testcase>"


def to_junit(c: Comparison, elapsed_s: float = 0.0) -> str:
    props = "".join(
        f"<property name={quoteattr(k)} value={quoteattr(v)}/>"
        for k, v in (
            ("base", c.base.label),
            ("new", c.new.label),
            ("base_runs", " ".join(c.base.ids)),
            ("new_runs", " ".join(c.new.ids)),
        )
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<testsuite name="harness.compare" tests="{len(c.findings)}" failures="{len(c.changes)}" errors="0" '
        f'time="{elapsed_s:.3f}" timestamp="{time.strftime("%Y-%m-%dT%H:%M:%S")}">\n'
        f"  <properties>{props}</properties>\n" + "\n".join(_case(f) for f in c.findings) + "\n</testsuite>\n"
    )


def to_json(c: Comparison) -> str:
    return json.dumps(c.to_dict(), indent=2, default=str)
