#!/usr/bin/env python3
"""Writes the quick profile's headline (from reports/verdict.json) between the `quick-report`
markers of README.md. Run after `repro all`; scripts/repro-all.sh calls it.

The healthy-baseline gate, then per setting and method: seeds, healthy runs, runs that lost
modes, runs whose D spectrum collapsed, final modes (mean and 95% interval) and the one-sided
Mann-Whitney p of SR against SN; then the co-occurrence of spectral and mode collapse over the
SN runs. Numbers are copied from the report's verdict, never computed here beyond formatting."""
import json
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
verdict_path = root / "reports" / "verdict.json"
readme = root / "README.md"
if not verdict_path.exists():
    sys.exit(f"readme-headline: no {verdict_path.relative_to(root)}; run `repro all` first")
v = json.loads(verdict_path.read_text())


def num(x, digits=2):
    return "–" if x is None else f"{x:.{digits}f}"


def interval(ci):
    return "" if not ci else f" [{num(ci[0], 1)}, {num(ci[1], 1)}]"


lines = [
    "Headline of the published quick report ([reports/report.md](reports/report.md); written by",
    "`scripts/readme-headline.py` from `reports/verdict.json`).",
    "",
]
b = v.get("baseline")
if b:
    word = "PASSED" if b["passed"] else "FAILED"
    lines.append(
        f"Healthy-baseline gate {word}: {b['setting']}, SN: {b['healthy_seeds']}/{b['seeds']} seeds "
        f"healthy, {num(b['modes_mean'], 1)} modes and {num(b['hq_mean'])} high-quality share on average."
    )
    lines.append("")
for s in v["settings"]:
    if s.get("headline"):
        lines.append(f"- {s['headline']}")
if any(s.get("headline") for s in v["settings"]):
    lines.append("")
lines += [
    "| setting | method | seeds | healthy | lost modes | spectral collapse | final modes, mean [95% CI] | p (SR > SN) |",
    "|---|---|---|---|---|---|---|---|",
]
for s in v["settings"]:
    p = s.get("p_sr_vs_sn", {})
    for name, m in s["methods"].items():
        lines.append(
            f"| {s['setting']} | {name} | {m['seeds']} | {m['healthy']} | {m['mode_collapsed']} | "
            f"{m['spectral_collapsed']} | {num(m['modes_mean'], 1)}{interval(m.get('modes_ci95'))} | "
            f"{num(p.get(name), 3) if name in p else ''} |"
        )
c = v.get("cooccurrence")
if c:
    lines += [
        "",
        f"Over all SN runs, spectral collapse x lost modes: both {c['both']}, spectral only "
        f"{c['spectral_only']}, modes only {c['mode_only']}, neither {c['neither']} "
        f"(Fisher's exact p = {num(c['fisher_p'], 3)}).",
    ]
block = "\n".join(lines) + "\n"

text = readme.read_text()
pattern = re.compile(r"(<!-- quick-report:start -->\n).*?(<!-- quick-report:end -->)", re.S)
if not pattern.search(text):
    sys.exit("readme-headline: README.md has no quick-report markers")
readme.write_text(pattern.sub(lambda m: m.group(1) + block + m.group(2), text))
print(f"readme-headline: wrote {len(v['settings'])} settings into README.md")
