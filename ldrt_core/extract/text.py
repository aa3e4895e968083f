"""Reading order: the body text (for mentions) and the paper as markdown.

Input: `PageAnalysis`es with line roles. Output: running body text, and markdown with headings,
paragraphs and captions, without running headers, figure text or table cells. Order on a page:
bands split by full-width elements, each band left column then right column.
"""

from __future__ import annotations

from ldrt_core.extract.labels import dehyphenate
from ldrt_core.extract.layout import Line
from ldrt_core.extract.regions import PageAnalysis, Role

SKIPPED = (Role.RUNNING, Role.FIGURE, Role.OTHER)


def reading_order(analysis: PageAnalysis) -> list[Line]:
    lines = [ln for ln in analysis.layout.lines if analysis.role(ln) not in SKIPPED]
    columns = analysis.columns
    if len(columns) == 1:
        return sorted(lines, key=lambda ln: (ln.top, ln.x0))
    split = (columns[0].x1 + columns[1].x0) / 2
    spanning = sorted(
        (ln for ln in lines if ln.x0 < split - 4 < split + 4 < ln.x1), key=lambda ln: ln.top
    )
    ordered: list[Line] = []
    band_top = float("-inf")
    for barrier in [*spanning, None]:
        band_bottom = barrier.top if barrier is not None else float("inf")
        band = [
            ln
            for ln in lines
            if ln not in spanning and band_top <= (ln.top + ln.bottom) / 2 < band_bottom
        ]
        ordered += sorted(band, key=lambda ln: (ln.x0 >= split, ln.top, ln.x0))
        if barrier is not None:
            ordered.append(barrier)
            band_top = barrier.bottom
    return ordered


def paragraphs(analysis: PageAnalysis) -> list[tuple[Role, list[Line]]]:
    """Consecutive lines of one role, split where the gap says a new paragraph starts."""
    blocks: list[tuple[Role, list[Line]]] = []
    previous: Line | None = None
    for line in reading_order(analysis):
        role = analysis.role(line)
        new_block = (
            previous is None
            or role != blocks[-1][0]
            or (role == Role.HEADING and abs(line.size - previous.size) > 0.5)
            or line.top - previous.bottom > 0.9 * line.size
            or line.top < previous.top - 1  # jumped to a new column
            or (role == Role.BODY and line.x0 - previous.x0 > 0.8 * line.size)  # indent
        )
        if new_block:
            blocks.append((role, [line]))
        else:
            blocks[-1][1].append(line)
        previous = line
    return blocks


def body_text(analyses: list[PageAnalysis]) -> str:
    parts = []
    for analysis in analyses:
        parts += [
            dehyphenate([ln.text for ln in lines])
            for role, lines in paragraphs(analysis)
            if role == Role.BODY
        ]
    return "\n".join(parts)


def to_markdown(analyses: list[PageAnalysis], title_size: float) -> str:
    out: list[str] = []
    for analysis in analyses:
        for role, lines in paragraphs(analysis):
            text = dehyphenate([ln.text for ln in lines])
            if role == Role.HEADING:
                level = "#" if lines[0].size >= title_size and analysis.layout.number == 1 else "##"
                out.append(f"{level} {text}")
            elif role == Role.CAPTION:
                out.append(f"*{text}*")
            else:
                out.append(text)
    return "\n\n".join(out) + "\n"
