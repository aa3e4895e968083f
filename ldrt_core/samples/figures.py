"""The figure graphics of the sample papers, drawn into a box on a reportlab canvas.

Input: a `FigureSpec` (its `PanelSpec`s and a seed), the figure's area in reportlab coordinates
(origin at the bottom-left) and the `Fonts`. Output: drawing operations on the canvas: raster panels
are matplotlib PNGs drawn as images; vector panels are reportlab paths and text (axes, ticks, tick
labels, axis labels, bars, lines, markers, legends); multi-panel figures carry bold panel letters.
Everything drawn stays inside the area, so the area is the figure's ground-truth box.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from PIL.PngImagePlugin import PngInfo
from reportlab.lib.utils import ImageReader

from ldrt_core.samples.content import (
    HEATMAP_CYTOKINES,
    PANEL_LETTER_STRIP,
    FigureSpec,
    PanelKind,
    PanelSpec,
)
from ldrt_core.samples.layout import Fonts

Canvas = Any  # reportlab.pdfgen.canvas.Canvas: reportlab ships no type information
Rgb = tuple[float, float, float]

PALETTE: tuple[Rgb, ...] = (
    (0.55, 0.55, 0.55),
    (0.12, 0.47, 0.71),
    (0.84, 0.37, 0.0),
    (0.17, 0.63, 0.17),
)
BLACK: Rgb = (0.0, 0.0, 0.0)
PANEL_GAP = 8.0
PANEL_LETTER_SIZE = 9.0
# Keeps strokes and glyph boxes clear of the area's edge.
INSET = 1.5


@dataclass(frozen=True)
class Area:
    """A rectangle in reportlab coordinates: (x, y) is the bottom-left corner."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def top(self) -> float:
        return self.y + self.h


def draw_figure(canvas: Canvas, spec: FigureSpec, area: Area, fonts: Fonts) -> None:
    if spec.kind != "multipanel":
        draw_panel(canvas, spec.panel_specs[0], area, fonts, panel_rng(spec, 0))
        return
    rows, cols = spec.grid
    panel_w = (area.w - (cols - 1) * PANEL_GAP) / cols
    panel_h = (area.h - (rows - 1) * PANEL_GAP) / rows
    for index, (letter, panel_spec) in enumerate(zip(spec.panels, spec.panel_specs, strict=True)):
        row, col = divmod(index, cols)
        panel = Area(
            area.x + col * (panel_w + PANEL_GAP),
            area.top - (row + 1) * panel_h - row * PANEL_GAP,
            panel_w,
            panel_h,
        )
        draw_panel_letter(canvas, letter, panel, fonts)
        content = Area(panel.x, panel.y, panel.w, panel.h - PANEL_LETTER_STRIP)
        draw_panel(canvas, panel_spec, content, fonts, panel_rng(spec, index))


def panel_rng(spec: FigureSpec, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, index])


def draw_panel_letter(canvas: Canvas, letter: str, panel: Area, fonts: Fonts) -> None:
    canvas.setFillColorRGB(*BLACK)
    canvas.setFont(fonts.bold, PANEL_LETTER_SIZE)
    canvas.drawString(panel.x + INSET, panel.top - PANEL_LETTER_SIZE, letter)


def draw_panel(
    canvas: Canvas, panel: PanelSpec, area: Area, fonts: Fonts, rng: np.random.Generator
) -> None:
    match panel.kind:
        case "micrograph" | "blot" | "heatmap":
            png = raster_png(panel.kind, area, rng)
            canvas.drawImage(ImageReader(io.BytesIO(png)), area.x, area.y, area.w, area.h)
        case "bars":
            draw_bar_chart(canvas, area, fonts, rng, panel.cytokine)
        case "lines":
            draw_line_chart(canvas, area, fonts, rng, panel.dose)
        case "scatter":
            draw_scatter_chart(canvas, area, fonts, rng, panel.cytokine)


# Raster panels --------------------------------------------------------------------------------


def pixel_size(area: Area) -> tuple[int, int]:
    """Small images (at most 320 px wide) keep the corpus fast to write and to parse."""
    width = max(80, min(320, round(area.w * 1.3)))
    return width, max(40, round(width * area.h / area.w))


def raster_png(kind: PanelKind, area: Area, rng: np.random.Generator) -> bytes:
    width, height = pixel_size(area)
    if kind == "heatmap":
        return heatmap_png(width, height, rng)
    pixels = micrograph(width, height, rng) if kind == "micrograph" else blot(width, height, rng)
    buffer = io.BytesIO()
    # An empty PngInfo leaves out matplotlib's "Software" text chunk.
    imsave(buffer, pixels, format="png", pil_kwargs={"pnginfo": PngInfo()})
    return buffer.getvalue()


def gaussian_blobs(width: int, height: int, centres: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width))
    for (cx, cy), sigma in zip(centres, sigmas, strict=True):
        image += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return image


def micrograph(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A fluorescence-like field: blue nuclei (DAPI), some cells ringed by a green marker."""
    count = int(rng.integers(12, 30))
    centres = rng.uniform((0, 0), (width, height), size=(count, 2))
    nuclei = gaussian_blobs(width, height, centres, rng.uniform(2.5, 4.5, count))
    positive = centres[rng.random(count) < 0.5]
    marker = gaussian_blobs(width, height, positive, rng.uniform(6.0, 9.0, len(positive)))
    noise = rng.normal(0.0, 0.04, (height, width, 3))
    pixels = np.stack([np.zeros((height, width))] * 3, axis=-1) + noise + 0.05
    pixels[..., 1] += 0.8 * marker
    pixels[..., 2] += 0.9 * nuclei
    bar_width = max(8, width // 6)  # scale bar, bottom right
    pixels[height - 8 : height - 5, width - bar_width - 6 : width - 6, :] = 1.0
    return np.clip(pixels, 0.0, 1.0)


def blot(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A western blot: lanes of dark bands on grey, a target row over a loading-control row."""
    lanes = int(rng.integers(4, 7))
    ys, xs = np.mgrid[0:height, 0:width]
    darkness = np.zeros((height, width))
    for row, row_y in enumerate((0.35 * height, 0.72 * height)):
        for lane in range(lanes):
            cx = (lane + 0.5) * width / lanes
            strength = 0.8 if row else rng.uniform(0.25, 0.9)
            darkness += strength * np.exp(
                -(((xs - cx) / (0.32 * width / lanes)) ** 4) - ((ys - row_y) / (0.05 * height)) ** 2
            )
    grey = 0.93 - 0.8 * np.clip(darkness, 0.0, 1.0) + rng.normal(0.0, 0.015, (height, width))
    return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=-1)


def heatmap_png(width: int, height: int, rng: np.random.Generator) -> bytes:
    """Cytokines by dose group as a matplotlib heat map with its own tick labels and colour bar."""
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.3, 0.22, 0.5, 0.72))
    colour_axes = figure.add_axes((0.84, 0.22, 0.04, 0.72))
    values = rng.normal(0.0, 1.0, (5, 4))
    image = axes.imshow(values, cmap="RdBu_r", aspect="auto", vmin=-2.5, vmax=2.5)
    axes.set_yticks(range(5), HEATMAP_CYTOKINES, fontsize=5)
    axes.set_xticks(range(4), ["0", "0.1", "0.5", "1.0"], fontsize=5)
    axes.set_xlabel("Dose (Gy)", fontsize=5, labelpad=1)
    axes.tick_params(length=1.5, pad=1)
    figure.colorbar(image, cax=colour_axes).ax.tick_params(labelsize=4, length=1.5, pad=1)
    buffer = io.BytesIO()
    # No "Software" text chunk: the bytes depend on the pixels, not the matplotlib version.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


# Vector panels --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axes:
    """A plot area inside a panel, with its data ranges, ready to map data to page points."""

    plot: Area
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def px(self, value: float) -> float:
        low, high = self.x_range
        return self.plot.x + (value - low) / (high - low) * self.plot.w

    def py(self, value: float) -> float:
        low, high = self.y_range
        return self.plot.y + (value - low) / (high - low) * self.plot.h


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Round tick values from 0 that reach past `maximum`."""
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < maximum:
        ticks.append(ticks[-1] + step)
    return ticks


def tick_text(value: float) -> str:
    return f"{value:g}"


def label_size(area: Area) -> float:
    return 6.0 if area.w > 150 else 5.0


def draw_axes(
    canvas: Canvas,
    area: Area,
    fonts: Fonts,
    y_ticks: list[float],
    x_range: tuple[float, float],
    labels: tuple[str, str],
) -> Axes:
    """Left and bottom axes with y ticks and both axis titles; x ticks are the caller's."""
    size = label_size(area)
    x_label, y_label = labels
    tick_labels = [tick_text(v) for v in y_ticks]
    widest = max(fonts.width(t, fonts.regular, size) for t in tick_labels)
    left = area.x + INSET + size + 2 + widest + 3
    bottom = area.y + INSET + 2 * size + 6
    plot = Area(left, bottom, area.right - INSET - left, area.top - INSET - size / 2 - bottom)
    axes = Axes(plot, x_range, (y_ticks[0], y_ticks[-1]))
    canvas.setStrokeColorRGB(*BLACK)
    canvas.setFillColorRGB(*BLACK)
    canvas.setLineWidth(0.6)
    canvas.line(plot.x, plot.y, plot.right, plot.y)
    canvas.line(plot.x, plot.y, plot.x, plot.top)
    canvas.setFont(fonts.regular, size)
    for value, text in zip(y_ticks, tick_labels, strict=True):
        y = axes.py(value)
        canvas.line(plot.x - 2, y, plot.x, y)
        canvas.drawRightString(plot.x - 3, y - size * 0.35, text)
    canvas.drawCentredString(plot.x + plot.w / 2, area.y + INSET - fonts.descent * size, x_label)
    if fonts.width(y_label, fonts.regular, size) > plot.h:
        y_label = y_label.split(" ")[0]
    canvas.saveState()
    # Rotated text: the glyphs' ascent points left, so the baseline sits one ascent from the edge.
    canvas.translate(area.x + INSET + (1 + fonts.descent) * size, plot.y + plot.h / 2)
    canvas.rotate(90)
    canvas.drawCentredString(0, 0, y_label)
    canvas.restoreState()
    return axes


def draw_x_tick(canvas: Canvas, axes: Axes, value: float, text: str, size: float) -> None:
    x = axes.px(value)
    canvas.line(x, axes.plot.y, x, axes.plot.y - 2)
    canvas.drawCentredString(x, axes.plot.y - 3 - size, text)


def draw_bar_chart(
    canvas: Canvas, area: Area, fonts: Fonts, rng: np.random.Generator, cytokine: str
) -> None:
    """Cytokine level by dose group: bars with error bars and stars over significant groups."""
    groups = ("Sham", "0.1", "0.5", "1.0")
    base = float(rng.uniform(80, 600))
    means = [base * f * float(rng.uniform(0.92, 1.08)) for f in (1.0, 0.85, 0.55, 0.7)]
    errors = [m * float(rng.uniform(0.06, 0.14)) for m in means]
    ticks = nice_ticks(max(m + e for m, e in zip(means, errors, strict=True)) * 1.2)
    axes = draw_axes(
        canvas, area, fonts, ticks, (0, len(groups)), ("Dose (Gy)", f"{cytokine} (pg/mL)")
    )
    size = label_size(area)
    bar_w = axes.plot.w / len(groups) * 0.6
    for i, (group, mean, error) in enumerate(zip(groups, means, errors, strict=True)):
        centre = axes.px(i + 0.5)
        canvas.setFillColorRGB(*PALETTE[i % len(PALETTE)])
        canvas.rect(
            centre - bar_w / 2, axes.plot.y, bar_w, axes.py(mean) - axes.plot.y, stroke=0, fill=1
        )
        canvas.setFillColorRGB(*BLACK)
        low, high = axes.py(mean - error), axes.py(mean + error)
        canvas.line(centre, low, centre, high)
        canvas.line(centre - bar_w / 5, high, centre + bar_w / 5, high)
        draw_x_tick(canvas, axes, i + 0.5, group, size)
        if mean < 0.75 * base:
            canvas.drawCentredString(centre, high + 1.5, "*")


def draw_line_chart(
    canvas: Canvas, area: Area, fonts: Fonts, rng: np.random.Generator, dose: str
) -> None:
    """A time course for sham and irradiated groups, with markers and a legend top right."""
    hours = (0, 6, 24, 48, 72)
    series = (("Sham", 1.0), (dose, float(rng.uniform(0.5, 0.75))))
    start = float(rng.uniform(20, 80))
    curves = [
        [
            start * (1 - (1 - f) * (1 - math.exp(-t / 20))) * float(rng.uniform(0.93, 1.07))
            for t in hours
        ]
        for _, f in series
    ]
    ticks = nice_ticks(max(max(c) for c in curves) * 1.45)
    axes = draw_axes(canvas, area, fonts, ticks, (0, 76), ("Time (h)", "Score (a.u.)"))
    size = label_size(area)
    for t in (0, 24, 48, 72):
        draw_x_tick(canvas, axes, t, str(t), size)
    for i, ((name, _), values) in enumerate(zip(series, curves, strict=True)):
        colour = PALETTE[(i + 1) % len(PALETTE)] if i else BLACK
        canvas.setStrokeColorRGB(*colour)
        canvas.setFillColorRGB(*colour)
        points = [(axes.px(t), axes.py(v)) for t, v in zip(hours, values, strict=True)]
        canvas.lines([(*a, *b) for a, b in itertools.pairwise(points)])
        for x, y in points:
            canvas.circle(x, y, 1.3, stroke=0, fill=1)
        legend_y = axes.plot.top - (i + 1) * (size + 2)
        legend_x = axes.plot.right - 4 - max(fonts.width(n, fonts.regular, size) for n, _ in series)
        canvas.line(legend_x - 10, legend_y + size * 0.3, legend_x - 2, legend_y + size * 0.3)
        canvas.setFillColorRGB(*BLACK)
        canvas.drawString(legend_x, legend_y, name)


def draw_scatter_chart(
    canvas: Canvas, area: Area, fonts: Fonts, rng: np.random.Generator, cytokine: str
) -> None:
    """Cytokine release against delivered dose, with a least-squares line and its r."""
    doses = rng.uniform(0.0, 1.5, int(rng.integers(12, 24)))
    values = 60 - 25 * doses + rng.normal(0.0, 6.0, len(doses))
    values = np.clip(values, 2.0, None)
    ticks = nice_ticks(float(values.max()) * 1.25)
    axes = draw_axes(canvas, area, fonts, ticks, (0, 1.6), ("Dose (Gy)", f"{cytokine} (pg/mL)"))
    size = label_size(area)
    for d in (0.0, 0.5, 1.0, 1.5):
        draw_x_tick(canvas, axes, d, f"{d:.1f}", size)
    canvas.setFillColorRGB(*PALETTE[1])
    for d, v in zip(doses, values, strict=True):
        canvas.circle(axes.px(float(d)), axes.py(float(v)), 1.2, stroke=0, fill=1)
    slope, intercept = np.polyfit(doses, values, 1)
    canvas.setStrokeColorRGB(*PALETTE[2])
    line_y = [float(np.clip(intercept + slope * d, 0.0, ticks[-1])) for d in (0.0, 1.5)]
    canvas.line(axes.px(0.0), axes.py(line_y[0]), axes.px(1.5), axes.py(line_y[1]))
    r = float(np.corrcoef(doses, values)[0, 1])
    canvas.setFillColorRGB(*BLACK)
    canvas.drawRightString(axes.plot.right - 2, axes.plot.top - size, f"r = {r:.2f}")
