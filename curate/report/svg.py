"""Small inline SVG charts: no script, no external file, so the page works offline and anywhere."""
from __future__ import annotations

from html import escape

COLORS = ["#3b6ea8", "#d9822b", "#4f9a5c", "#a8443b", "#7b5ea8", "#8a8a8a"]


def _num(x: float) -> str:
    return f"{x:.1f}"


def hbars(items: list[tuple[str, float]], width: int = 640, unit: str = "") -> str:
    """Horizontal bars with labels on the left and values on the right."""
    if not items:
        return ""
    row, label_w, value_w = 22, 190, 80
    top = max(v for _, v in items) or 1
    h = row * len(items) + 4
    out = [f'<svg class="chart" viewBox="0 0 {width} {h}" width="{width}" height="{h}" role="img">']
    for i, (label, value) in enumerate(items):
        y = 2 + i * row
        w = (width - label_w - value_w) * value / top
        out.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(str(label))}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{_num(max(w, 1))}" height="{row - 6}" fill="{COLORS[0]}"/>')
        out.append(f'<text x="{_num(label_w + w + 6)}" y="{y + 15}">{escape(f"{value:g}{unit}")}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram(values: list[float], bins: int = 30, width: int = 640, height: int = 180, label: str = "",
              counts: list[tuple[str, int]] | None = None) -> str:
    """Vertical bars: either ``values`` binned here, or ready ``counts`` (label, n)."""
    if counts is None:
        if not values:
            return ""
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1
        n = bins if hi > lo else 1
        edges = [lo + span * i / n for i in range(n + 1)]
        tally = [0] * n
        for v in values:
            tally[min(int((v - lo) / span * n), n - 1)] += 1
        counts = [(f"{edges[i]:.0f}", c) for i, c in enumerate(tally)]
        axis = (f"{lo:g}", f"{hi:g}")
    else:
        axis = (counts[0][0], counts[-1][0]) if counts else ("", "")
    if not counts:
        return ""
    pad_l, pad_b = 40, 30
    top = max(c for _, c in counts) or 1
    bw = (width - pad_l - 10) / len(counts)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
           f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - 10}" y2="{height - pad_b}" stroke="#999"/>',
           f'<text x="{pad_l - 4}" y="14" text-anchor="end">{top}</text>',
           f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end">0</text>']
    for i, (name, c) in enumerate(counts):
        h = (height - pad_b - 10) * c / top
        x = pad_l + i * bw
        out.append(f'<rect x="{_num(x + 1)}" y="{_num(height - pad_b - h)}" width="{_num(max(bw - 2, 1))}" '
                   f'height="{_num(h)}" fill="{COLORS[0]}"><title>{escape(str(name))}: {c}</title></rect>')
        if len(counts) <= 12:
            out.append(f'<text x="{_num(x + bw / 2)}" y="{height - pad_b + 14}" text-anchor="middle">{escape(str(name))}</text>')
    if len(counts) > 12:
        out.append(f'<text x="{pad_l}" y="{height - pad_b + 14}">{escape(axis[0])}</text>')
        out.append(f'<text x="{width - 10}" y="{height - pad_b + 14}" text-anchor="end">{escape(axis[1])}</text>')
    if label:
        out.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def lines(series: dict[str, list[tuple[float, float]]], width: int = 640, height: int = 240, xlabel: str = "step") -> str:
    """Line chart of named (x, y) series, with a legend."""
    points = [p for s in series.values() for p in s]
    if not points:
        return ""
    pad_l, pad_b, pad_t = 50, 34, 22
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    xs, ys = (x1 - x0) or 1, (y1 - y0) or 1

    def at(x, y):
        return (pad_l + (width - pad_l - 10) * (x - x0) / xs, pad_t + (height - pad_b - pad_t) * (1 - (y - y0) / ys))

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
           f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - 10}" y2="{height - pad_b}" stroke="#999"/>',
           f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#999"/>',
           f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{y1:.3g}</text>',
           f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end">{y0:.3g}</text>',
           f'<text x="{pad_l}" y="{height - pad_b + 14}">{x0:g}</text>',
           f'<text x="{width - 10}" y="{height - pad_b + 14}" text-anchor="end">{x1:g}</text>',
           f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">{escape(xlabel)}</text>']
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{_num(a)},{_num(b)}" for a, b in (at(x, y) for x, y in pts))
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for x, y in pts if len(pts) <= 40 else []:
            a, b = at(x, y)
            out.append(f'<circle cx="{_num(a)}" cy="{_num(b)}" r="3" fill="{color}"><title>{escape(name)} '
                       f'step {x:g}: {y:.4f}</title></circle>')
        out.append(f'<rect x="{pad_l + 10 + i * 150}" y="4" width="12" height="12" fill="{color}"/>'
                   f'<text x="{pad_l + 26 + i * 150}" y="14">{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)
