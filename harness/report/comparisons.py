"""``comparisons.md``: the pairwise comparisons as people read them, with how many seeds each
difference needs, and notes that say how every figure was computed."""
from __future__ import annotations

from typing import Any

import pandas as pd

from harness.metrics import column
from harness.report.power import NOTES, plan_text, seed_lines
from harness.report.tables import to_markdown


def display(metric: str) -> tuple[float, str, int]:
    """(scale, unit, digits) of a metric's differences: accuracy in percentage points."""
    declared = column(metric)
    if declared is None:
        return 1.0, "", 4
    return declared.scale, " pts" if declared.unit == "%" else "", declared.digits


def _num(v: Any, scale: float = 1.0, digits: int = 4, signed: bool = False) -> str:
    if v is None or v != v:
        return "–"
    return f"{scale * v:+.{digits}f}" if signed else f"{scale * v:.{digits}f}"


def comparisons_markdown(comp: pd.DataFrame, provenance: dict[str, Any], title: str, methods: str = "") -> str:
    """The comparisons frame (:func:`harness.report.stats.pairwise_comparisons`) as Markdown, one
    table per metric, followed by the notes (``methods``: the tests used, in words)."""
    lines = [f"# {title}: pairwise comparisons", ""]
    if comp.empty:
        return "\n".join(lines + ["Fewer than two methods have results: nothing to compare.", ""])
    for metric in dict.fromkeys(comp["metric"]):
        part = comp[comp["metric"] == metric]
        scale, unit, digits = display(metric)
        head = f" ({unit.strip()})" if unit else ""
        shown = pd.DataFrame({
            "data set": part["dataset"], "a": part["method_a"], "b": part["method_b"],
            "pairs": [f"{n} {u}" for n, u in zip(part["n"], part["paired_over"])],
            f"mean a − b{head}": [_num(v, scale, digits, True) for v in part["mean_diff"]],
            "p (Holm)": [_num(v) for v in part["p_holm"]], "better (α = 0.05)": part["better"],
            f"smallest detectable{head}": [_num(v, scale, digits) for v in part["min_detectable"]],
            "seeds needed": ["–" if v != v else f"{int(v):,}" for v in part["seeds_needed"]],
            "power check": [f"{c:.2f} ({m})" if c == c else "–"
                            for c, m in zip(part["power_check"], part["power_check_method"])],
            "in words": [plan_text(r, scale, unit, digits) for r in part.to_dict("records")],
        })
        rounds = round_decisions(provenance, metric)
        if rounds:
            shown.insert(7, "seed rounds (always-valid)", [
                rounds.get((r["dataset"], r["method_a"], r["method_b"]), "–") for r in part.to_dict("records")])
        sense = part["better_is"].iloc[0]
        lines += [f"## {metric} ({sense} is better)", "", to_markdown(shown)]
    lines += ["## Notes", ""]
    if methods:
        lines += [f"- {methods}"]
    lines += [f"- {NOTES}"]
    if provenance.get("seed_rounds"):
        from harness.sequential import record_text

        lines += [f"- Seed rounds: {record_text(provenance['seed_rounds'])}"]
    return "\n".join(lines) + "\n"


def round_decisions(provenance: dict[str, Any], metric: str) -> dict[tuple[str, str, str], str]:
    """The seed-rounds decision of each compared pair (both orders), for the compared metric."""
    record = provenance.get("seed_rounds") or {}
    if (record.get("compare") or {}).get("metric") != metric:
        return {}
    out = {}
    for d in record.get("decisions") or ():
        text = f"{d['state']} ({d['n']} seeds, e = {d['e_value']:.3g} vs {d['threshold']:g})"
        out[(d["dataset"], d["a"], d["b"])] = out[(d["dataset"], d["b"], d["a"])] = text
    return out


def terminal_lines(comp: pd.DataFrame, metric: str = "accuracy") -> list[str]:
    """The seeds-needed sentences of one metric, for the terminal summary."""
    scale, unit, digits = display(metric)
    return seed_lines(comp, metric, scale, unit, min(digits, 2))


__all__ = ["comparisons_markdown", "terminal_lines", "display", "round_decisions"]
