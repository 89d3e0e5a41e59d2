#!/usr/bin/env python3
"""Plots a sweep of scripts/compare.sh as an SVG, one line per server:
round trips/s against connections, or MB/s against message size. Standard
library only.

    scripts/compare.sh --sweep
    python3 scripts/plot.py target/compare/sweep_size.tsv > docs/perf/throughput_size.svg
    python3 scripts/plot.py target/compare/sweep_connections.tsv > docs/perf/throughput_connections.svg

The input is tab-separated with a header line: server, then the x column
(connections or size), then the y column (msgs_per_s or mb_per_s); further
columns are ignored. The x axis is logarithmic (base 2).
"""
import math
import sys
from collections import defaultdict
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 80, 200, 50, 60
COLORS = {
    'ours_line': '#1f77b4',
    'ours_chunk': '#17becf',
    'baseline_line': '#ff7f0e',
    'python_chunk': '#2ca02c',
    'threads_line': '#1f77b4',
    'tokio_line': '#d62728',
    'idiomatic_line': '#ff7f0e',
}
OTHER_COLORS = ['#9467bd', '#8c564b', '#e377c2']
LABELS = {
    'ours_line': 'ours (line)',
    'ours_chunk': 'ours (chunk)',
    'baseline_line': 'hand-written (line)',
    'python_chunk': 'Python threaded (chunk)',
    'threads_line': 'thread runner (line)',
    'tokio_line': 'tokio runner (line)',
    'idiomatic_line': 'idiomatic tokio (line)',
}


AXES = {
    'connections': 'connections (ping-pong, one message in flight each)',
    'size': 'message size in bytes (pipelined, one connection)',
    'msgs_per_s': 'round trips per second',
    'mb_per_s': 'MB/s of messages echoed',
}


def read(path):
    """Returns (x name, y name, {server: [(x, y)]})."""
    series = defaultdict(list)
    with open(path) as f:
        header = f.readline().rstrip('\n').split('\t')
        x_name, y_name = header[1], header[2]
        for line in f:
            fields = line.rstrip('\n').split('\t')
            if len(fields) < 3 or not fields[2]:
                continue
            series[fields[0]].append((int(fields[1]), float(fields[2])))
    return x_name, y_name, {name: sorted(points) for name, points in series.items()}


def short(value):
    """2500000 -> 2.5M, 40000 -> 40k, 1200 -> 1200."""
    if value >= 1_000_000:
        return f'{value / 1_000_000:g}M'
    if value >= 10_000:
        return f'{value / 1000:g}k'
    return f'{value:g}'


def size_label(x):
    return f'{x // 1024}Ki' if x >= 1024 and x % 1024 == 0 else str(x)


def nice_ceiling(value):
    """The smallest 1, 2 or 5 times a power of ten at or above value."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def svg(x_name, y_name, series, title):
    xs = sorted({x for points in series.values() for x, _ in points})
    ys = [y for points in series.values() for _, y in points if y > 0]
    top = nice_ceiling(max(ys))
    # A logarithmic y axis when the values span more than 20x, else linear from 0.
    log_y = max(ys) / min(ys) > 20
    bottom = 10 ** math.floor(math.log10(min(ys))) if log_y else 0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    lo, hi = math.log2(xs[0]), math.log2(xs[-1]) if xs[-1] > xs[0] else math.log2(xs[0]) + 1

    def px(x):
        return LEFT + (math.log2(x) - lo) / (hi - lo) * plot_w

    def py(y):
        if log_y:
            share = (math.log10(max(y, bottom)) - math.log10(bottom)) / (math.log10(top) - math.log10(bottom))
        else:
            share = y / top
        return TOP + plot_h - share * plot_h

    if log_y:
        ticks = [m * 10 ** e for e in range(int(math.log10(bottom)), int(math.log10(top)) + 1) for m in (1, 2, 5)]
        ticks = [t for t in ticks if bottom <= t <= top]
    else:
        ticks = [top * i / 5 for i in range(6)]

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for y in ticks:
        out.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + plot_w}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{short(y)}</text>')
    for x in xs:
        out.append(f'<line x1="{px(x):.1f}" y1="{TOP}" x2="{px(x):.1f}" y2="{TOP + plot_h}" stroke="#eee"/>')
        label = size_label(x) if x_name == 'size' else str(x)
        out.append(f'<text x="{px(x):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{label}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">'
               f'{escape(AXES.get(x_name, x_name))}</text>')
    out.append(f'<text x="18" y="{TOP + plot_h / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {TOP + plot_h / 2})">{escape(AXES.get(y_name, y_name))}'
               f'{" (log scale)" if log_y else ""}</text>')
    # Ours first, then the others in a fixed order.
    order = sorted(series, key=lambda name: (not name.startswith('ours'), name))
    for i, name in enumerate(order):
        points = series[name]
        color = COLORS.get(name, OTHER_COLORS[i % len(OTHER_COLORS)])
        path = ' '.join(f'{px(x):.1f},{py(y):.1f}' for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        ly = TOP + 10 + 20 * i
        out.append(f'<line x1="{LEFT + plot_w + 12}" y1="{ly}" x2="{LEFT + plot_w + 32}" y2="{ly}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{LEFT + plot_w + 36}" y="{ly + 4}">{escape(LABELS.get(name, name))}</text>')
    out.append('</svg>')
    return '\n'.join(out) + '\n'


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit('usage: plot.py SWEEP.tsv [TITLE] > plot.svg')
    x_name, y_name, series = read(sys.argv[1])
    if not series:
        sys.exit('plot.py: no data in ' + sys.argv[1])
    default = 'over loopback TCP, every reply checked (this machine)'
    title = sys.argv[2] if len(sys.argv) == 3 else default
    sys.stdout.write(svg(x_name, y_name, series, title))


if __name__ == '__main__':
    main()
