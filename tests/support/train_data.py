"""Small LLaVA training sets made in memory: figures drawn with PIL, captions and conversations.

Used by the training tests. Each record's image is a PNG of coloured bars (a toy bar chart); the
captions mention the colours and the doses so that a model could in principle learn them.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageDraw

COLOURS = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (220, 180, 20), (120, 40, 160)]


def bar_chart(index: int, size: tuple[int, int] = (48, 36)) -> bytes:
    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for bar in range(3):
        height = 6 + ((index + bar * 7) % 5) * 6
        colour = COLOURS[(index + bar) % len(COLOURS)]
        left = 4 + bar * 14
        draw.rectangle([left, size[1] - height, left + 9, size[1] - 1], fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def records(count: int, stage: str = "instruct") -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """`count` LLaVA records and the image bytes by store key."""
    images: dict[str, bytes] = {}
    rows = []
    for i in range(count):
        key = f"figures/{i:02x}/chart-{i}.png"
        images[key] = bar_chart(i)
        dose = 0.5 * (i % 4 + 1)
        caption = f"Figure {i + 1}. IL-6 falls after {dose} Gy in arm {i % 3}."
        if stage == "align":
            conversation = [
                {"from": "human", "value": "<image>\nDescribe the figure briefly."},
                {"from": "gpt", "value": caption},
            ]
        else:
            conversation = [
                {"from": "human", "value": "<image>\nWhat does the chart show?"},
                {"from": "gpt", "value": caption},
                {"from": "human", "value": "Which dose?"},
                {"from": "gpt", "value": f"{dose} Gy."},
            ]
        rows.append({"id": f"r{i}", "image": key, "conversations": conversation})
    return rows, images
