from typing import Any


def text_from_rendered(rendered: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    text = f"# Marker\n\n{rendered['bytes']} bytes, weights from {rendered['weights_from']}\n"
    return text, "md", {}
