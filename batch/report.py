"""The gold tables as one self-contained HTML report: a plotly chart per question, its table
under it, and when and from which source table versions each answer was computed.

Reads only the gold Delta tables (delta-rs, no Spark). plotly.js is inlined once, so the file
opens offline and can be mailed around.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from batch.gold import QUESTIONS, GoldError, gold_path, read_gold


@dataclass(frozen=True)
class Section:
    """One question of the seed: one chart, drawn from its first table; every table shown under it."""

    number: int
    title: str
    tables: tuple[str, ...]


SECTIONS = (
    Section(1, "Most popular category per country", ("category_by_country",)),
    Section(2, QUESTIONS["category_by_year"].title, ("category_by_year",)),
    Section(3, "Most followed user per country, and the country of the most followed user",
            ("top_user_by_country", "top_country_by_followers")),
    Section(4, "Most popular category per age group", ("category_by_age_group",)),
    Section(5, "Median follower count per age group", ("median_followers_by_age_group",)),
    Section(6, QUESTIONS["users_joined_by_year"].title, ("users_joined_by_year",)),
    Section(7, QUESTIONS["median_followers_by_join_year"].title, ("median_followers_by_join_year",)),
    Section(8, QUESTIONS["median_followers_by_age_group_and_join_year"].title,
            ("median_followers_by_age_group_and_join_year",)),
)

HIGHLIGHT, BASE = "#d62728", "#1f77b4"


# ---- charts: pure functions of the gold tables ---------------------------------------------

def _ranked_bars(table: pa.Table, group: str, label: str, value: str, highlight: set | None = None,
                 hover: str = "") -> "go.Figure":
    """Horizontal bars, one per (group, label) row: tied winners sit side by side under their group."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    rows = table.to_pylist()
    palette = {name: qualitative.Plotly[i % len(qualitative.Plotly)]
               for i, name in enumerate(sorted({str(r[label]) for r in rows}))}
    colors = ([HIGHLIGHT if r[group] in highlight else BASE for r in rows] if highlight is not None
              else [palette[str(r[label])] for r in rows])
    figure = go.Figure(go.Bar(
        orientation="h",
        y=[[str(r[group]) for r in rows], [str(r[label]) for r in rows]],
        x=[r[value] for r in rows], marker_color=colors,
        hovertemplate=f"%{{y}}<br>{hover or value}: %{{x:,}}<extra></extra>"))
    # Top to bottom in the table's order; room for every row.
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(height=120 + 24 * max(len(rows), 1), xaxis_title=value)
    return figure


def _bars(table: pa.Table, x: str, y: str) -> "go.Figure":
    import plotly.graph_objects as go

    figure = go.Figure(go.Bar(x=[str(v) for v in table.column(x).to_pylist()], y=table.column(y).to_pylist(),
                              marker_color=BASE))
    figure.update_xaxes(type="category", title=x)
    figure.update_layout(height=380, yaxis_title=y)
    return figure


def _lines(table: pa.Table, x: str, y: str, series: str | None = None) -> "go.Figure":
    import plotly.graph_objects as go

    rows = table.to_pylist()
    groups = list(dict.fromkeys(r[series] for r in rows)) if series else [None]
    figure = go.Figure()
    for name in groups:
        points = [r for r in rows if series is None or r[series] == name]
        figure.add_trace(go.Scatter(x=[p[x] for p in points], y=[p[y] for p in points], mode="lines+markers",
                                    name=str(name) if series else y))
    figure.update_xaxes(dtick=1, title=x)
    figure.update_layout(height=380, yaxis_title=y, showlegend=series is not None)
    return figure


def chart(section: Section, tables: dict[str, pa.Table]) -> "go.Figure":
    """The section's chart from its gold tables."""
    first = tables[section.tables[0]]
    match section.number:
        case 1:
            figure = _ranked_bars(first, "country", "category", "category_count")
        case 2:
            figure = _ranked_bars(first, "post_year", "category", "category_count")
        case 3:
            # The overall top user's country (countries, when tied) in red.
            top = tables.get("top_country_by_followers")
            highlight = set(top.column("country").to_pylist()) if top is not None else set()
            figure = _ranked_bars(first, "country", "poster_name", "follower_count", highlight)
        case 4:
            figure = _ranked_bars(first, "age_group", "category", "category_count")
        case 5:
            figure = _bars(first, "age_group", "median_follower_count")
        case 6:
            figure = _bars(first, "post_year", "number_users_joined")
        case 7:
            figure = _lines(first, "post_year", "median_follower_count")
        case 8:
            figure = _lines(first, "post_year", "median_follower_count", series="age_group")
        case _:
            raise ValueError(f"no chart for section {section.number}")
    if first.num_rows == 0:
        figure.add_annotation(text="no rows", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(margin=dict(l=10, r=10, t=30, b=10), template="plotly_white")
    return figure


# ---- HTML -----------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #555; font-size: 0.9rem; }
section.question { border-top: 1px solid #ddd; margin-top: 2rem; padding-top: 0.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.6rem; } th { background: #f4f4f4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.table-wrap { max-height: 24rem; overflow-y: auto; display: inline-block; }
.missing { color: #a00; }
"""


def _cell(column: str, value) -> tuple[str, bool]:
    if value is None:
        return "", False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if column.endswith("year"):
            return str(value), True
        if isinstance(value, float) and value != int(value):
            return f"{value:,.1f}", True
        return f"{int(value):,}", True
    return str(value), False


def html_table(name: str, table: pa.Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.column_names)
    body = []
    for row in table.to_pylist():
        cells = []
        for column, value in row.items():
            text, numeric = _cell(column, value)
            cells.append(f'<td{" class=num" if numeric else ""}>{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(table.column_names)}">no rows</td></tr>')
    return (f'<div class="table-wrap"><table id="table-{name}" data-rows="{table.num_rows}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _provenance(name: str, lake: str, info: dict) -> str:
    sources = ", ".join(f"{t} v{s['version']}" for t, s in sorted(info["sources"].items()))
    return (f'<p class="meta">gold table <code>{html.escape(gold_path(lake, name))}</code> version '
            f"{info['version']}, computed at {html.escape(str(info['computed_at']))} "
            f"from {html.escape(sources) or 'unknown sources'}</p>")


def render_report(lake: str, gold: dict[str, tuple[pa.Table, dict] | None],
                  generated_at: dt.datetime | None = None) -> str:
    """The report's HTML from the gold tables and their provenance (``read_gold`` results)."""
    import plotly.offline

    generated_at = generated_at or dt.datetime.now(dt.timezone.utc)
    present = {name: value for name, value in gold.items() if value is not None}
    runs = {(info["computed_at"], str(sorted((t, s["version"]) for t, s in info["sources"].items())))
            for _, info in present.values()}
    summary = ""
    if len(runs) == 1:  # one `pinpipe query` run wrote them all: say it once at the top
        _, info = next(iter(present.values()))
        sources = "; ".join(f"{t} version {s['version']} (<code>{html.escape(s['path'])}</code>)"
                            for t, s in sorted(info["sources"].items()))
        summary = f"<p class=meta>Computed at {html.escape(str(info['computed_at']))} from {sources}.</p>"
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<title>pinpipe: Pinterest posts, eight questions</title>",
        f"<style>{STYLE}</style>",
        f"<script>{plotly.offline.get_plotlyjs()}</script></head><body>",
        "<h1>Pinterest posts: eight questions</h1>",
        f"<p class=meta>Report generated at {generated_at.isoformat(timespec='seconds')} from the gold tables "
        f"under <code>{html.escape(lake.rstrip('/'))}/gold</code>.</p>",
        summary,
    ]
    for section in SECTIONS:
        parts.append(f'<section class="question" id="q{section.number}" data-tables="{" ".join(section.tables)}">')
        parts.append(f"<h2>{section.number}. {html.escape(section.title)}</h2>")
        missing = [n for n in section.tables if gold.get(n) is None]
        if section.tables[0] in missing:
            parts.append(f'<p class="missing">Not computed yet: run <code>pinpipe query '
                         f'{" ".join(section.tables)}</code>.</p></section>')
            continue
        tables = {n: gold[n][0] for n in section.tables if n not in missing}
        parts.append(chart(section, tables).to_html(
            full_html=False, include_plotlyjs=False, div_id=f"chart-{section.tables[0]}",
            config={"displaylogo": False, "responsive": True}))
        for name in section.tables:
            parts.append(f"<h3>{html.escape(QUESTIONS[name].title)} <code>{name}</code></h3>")
            if name in missing:
                parts.append(f'<p class="missing">Not computed yet: run <code>pinpipe query {name}</code>.</p>')
                continue
            table, info = gold[name]
            parts.append(html_table(name, table))
            parts.append(_provenance(name, lake, info))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(lake: str, out_path: str | Path = "report.html",
                 storage_options: dict[str, str] | None = None) -> Path:
    """Read every gold table of the lake and write the report; returns its path."""
    gold = {name: read_gold(lake, name, storage_options) for name in QUESTIONS}
    if all(value is None for value in gold.values()):
        raise GoldError(f"no gold tables under {lake.rstrip('/')}/gold: run `pinpipe query` first")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed, so a reader never opens half a report.
    partial = out.with_name(out.name + ".partial")
    partial.write_text(render_report(lake, gold), encoding="utf-8")
    partial.replace(out)
    return out
