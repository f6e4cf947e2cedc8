"""Writing a report: Markdown and self-contained HTML renderers, the CSV files, and write_report."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from minigpt import atomic
from minigpt.decide import Design
from minigpt.floors import run_floors
from minigpt.report.document import Block, document
from minigpt.report.fair import fair_blocks, main_frames, summary_csv
from minigpt.report.figures import variant_palette, write_figures
from minigpt.report.frames import RunReport, load_bench, load_frames, summarize_variants, variant_order
from minigpt.report.lengths import length_blocks
from minigpt.report.speed_results import load_speed
from minigpt.store import RunStore

MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|"})


def _md(text: str) -> str:
    """Plain text for Markdown: HTML-escaped (a code host renders entities) and markup escaped."""
    return html.escape(str(text), quote=False).translate(MARKDOWN_SPECIAL).replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    lines = []
    for kind, value in blocks:
        if kind == "h1":
            lines.append(f"# {_md(value)}")
        elif kind == "h2":
            lines.append(f"## {_md(value)}")
        elif kind == "p":
            lines.append(_md(value))
        elif kind == "figure":
            name, caption = value
            lines.append(f"![{_md(caption)}]({name})\n\n*{_md(caption)}*")
        else:
            rows = [value.columns, ["---"] * len(value.columns), *value.rows]
            lines.append("\n".join("| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows))
    return "\n\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5rem 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
"""
# The page may load nothing from anywhere: no scripts, no fonts, images only as data: URIs.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def render_html(blocks: list[Block], out_dir: Path) -> str:
    esc = html.escape
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{esc(value)}</{kind}>")
        elif kind == "figure":
            name, caption = value
            data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        else:
            head = "".join(f"<th>{esc(c)}</th>" for c in value.columns)
            rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in value.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    title = esc(blocks[0][1])
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def build(run_dir: str | Path) -> RunReport:
    all_trials, all_metrics = load_frames(run_dir)
    sweep = RunStore(run_dir).read_sweep()
    trials, metrics = main_frames(all_trials, all_metrics, sweep)
    bench, bench_note = load_bench(run_dir)
    order = variant_order(trials, sweep)
    bench_names = [] if bench is None else [v for v in dict.fromkeys(bench["variant"]) if v not in order]
    design = Design.of_sweep(sweep)
    speed, speed_note = load_speed(run_dir, design)
    floors, floors_note = run_floors(sweep)
    return RunReport(
        name=Path(run_dir).resolve().name,
        sweep=sweep,
        trials=trials,
        metrics=metrics,
        summary=summarize_variants(trials, order, speed, design),
        bench=bench,
        bench_note=bench_note,
        order=order,
        palette=variant_palette(order + bench_names),
        speed=speed,
        speed_note=speed_note,
        all_trials=all_trials,
        all_metrics=all_metrics,
        design=design,
        floors=floors,
        floors_note=floors_note,
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic.atomic_target(path) as tmp:
        frame.to_csv(tmp, index=False)


def default_report_dir(run_dir: str | Path) -> Path:
    """reports/NAME for runs/NAME."""
    return Path("reports") / Path(run_dir).resolve().name


def write_report(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Write report.html, report.md, results.csv, summary.csv and the figures into out_dir;
    returns the path of report.html."""
    report = build(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(report.all_trials if report.all_trials is not None else report.trials, out_dir / "results.csv")
    _write_csv(summary_csv(report), out_dir / "summary.csv")
    blocks = document(report, write_figures(report, out_dir)) + fair_blocks(report, out_dir)
    blocks += length_blocks(report, Path(run_dir), out_dir)
    atomic.write_text(out_dir / "report.md", render_markdown(blocks))
    atomic.write_text(out_dir / "report.html", render_html(blocks, out_dir))
    return out_dir / "report.html"
