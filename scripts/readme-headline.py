#!/usr/bin/env python3
"""Writes the quick profile's headline table (from reports/summary.csv) between the
`quick-report` markers of README.md. Run after `repro all`; scripts/repro-all.sh calls it.

One row per setting: modes captured (toys, Stacked MNIST) or FID (MNIST), SN against each SR
method, mean over seeds, and the spectral-collapse count. Numbers are copied, never computed
here beyond formatting."""
import csv
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
summary = root / "reports" / "summary.csv"
readme = root / "README.md"
if not summary.exists():
    sys.exit(f"readme-headline: no {summary.relative_to(root)}; run `repro all` first")

rows = list(csv.DictReader(summary.open()))
methods = []
for r in rows:
    if r["method"] not in methods:
        methods.append(r["method"])
by_setting = {}
for r in rows:
    by_setting.setdefault(r["setting"], {})[r["method"]] = r


def cell(r):
    if r is None:
        return "–"
    if r["modes_n"] not in ("", "0"):
        value = f'{float(r["modes_mean"]):.1f}/{float(r["modes_total_mean"]):.0f} modes'
    elif r["fid_n"] not in ("", "0"):
        value = f'FID {float(r["fid_mean"]):.1f}'
    else:
        value = "–"
    collapsed = f'{r["n_collapsed"]}/{r["n_spectral"]}' if r["n_spectral"] not in ("", "0") else "?"
    return f"{value}, collapsed {collapsed}"


lines = [
    "<!-- quick-report:start -->",
    "Headline of the published quick report ([reports/report.md](reports/report.md); written by",
    "`scripts/readme-headline.py` from `reports/summary.csv`): per setting, mean over seeds of the",
    "modes captured (ring, grid, Stacked MNIST) or the FID (MNIST, 128 samples), and how many runs'",
    "discriminators the `spectral` stage saw collapse.",
    "",
    "| setting | " + " | ".join(methods) + " |",
    "|---|" + "---|" * len(methods),
]
for setting, by_method in by_setting.items():
    lines.append(f"| {setting} | " + " | ".join(cell(by_method.get(m)) for m in methods) + " |")
# One figure: the normalized spectra of the first SN run whose D the detector saw collapse
# (the SR paper's Fig. 1 view), else of the first run.
runs = list(csv.DictReader((root / "reports" / "runs.csv").open()))
pick = next((r for r in runs if r["method"] == "SN" and r["collapsed"] == "true"), runs[0] if runs else None)
figure = pick and root / "reports" / "figures" / "spectra" / f'{pick["run"]}.png'
if figure and figure.exists():
    where = f' (collapse detected at iteration {pick["collapse_iteration"]})' if pick["collapsed"] == "true" else ""
    lines += [
        "",
        f'Normalized spectra of D\'s layer over training, run `{pick["run"]}`{where}:',
        "",
        f"![normalized singular values of {pick['run']}]({figure.relative_to(root)})",
    ]
lines.append("<!-- quick-report:end -->")
block = "\n".join(lines)
text = readme.read_text()
new, n = re.subn(r"<!-- quick-report:start -->.*?<!-- quick-report:end -->", block, text, flags=re.S)
if n != 1:
    sys.exit("readme-headline: README.md has no quick-report markers")
readme.write_text(new)
print(f"readme-headline: {len(by_setting)} settings written to README.md")
