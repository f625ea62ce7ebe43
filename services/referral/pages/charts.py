"""Charts drawn on the server as SVG: stacked bars, one bar per category, one colour per series,
with a legend. Each chart has a title and description for screen readers; the page shows the
same figures in a table beside it."""

from __future__ import annotations

from markupsafe import Markup, escape

#: Distinct on white and for common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 260, 40, 48, 16


def stacked_bars(chart_id: str, title: str, categories: list[str], series: dict[str, list[int]]) -> Markup:
    """An SVG bar chart: `series[name][i]` is the height of `name` in bar `categories[i]`."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    top = max([*totals, 1])
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(categories), 1)
    bar_w = max(step * 0.7, 1.0)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + 24 * len(series)}" '
        f'aria-labelledby="{escape(chart_id)}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#1b1b1b"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 4}" text-anchor="end" font-size="12">{top}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end" font-size="12">0</text>',
    ]
    label_every = max(1, len(categories) // 10)
    for i, category in enumerate(categories):
        x = LEFT + i * step + (step - bar_w) / 2
        y: float = TOP + plot_h
        for (name, values), colour in zip(series.items(), PALETTE, strict=False):
            h = values[i] / top * plot_h
            if values[i]:
                y -= h
                parts.append(
                    f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{escape(category)}, {escape(name)}: {values[i]}</title></rect>'
                )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" '
                f'font-size="11">{escape(category)}</text>'
            )
    for j, (name, colour) in enumerate(zip(series, PALETTE, strict=False)):
        y = HEIGHT + 24 * j - 8
        parts.append(f'<rect x="{LEFT}" y="{y}" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{LEFT + 20}" y="{y + 12}" font-size="13">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text put in above went through escape())
