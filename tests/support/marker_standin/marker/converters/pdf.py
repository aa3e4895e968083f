from pathlib import Path
from typing import Any


class PdfConverter:
    def __init__(self, artifact_dict: dict[str, Any]) -> None:
        self.artifact_dict = artifact_dict

    def __call__(self, filepath: str) -> dict[str, Any]:
        data = Path(filepath).read_bytes()
        if b"marker-fails-here" in data:
            raise RuntimeError("CUDA out of memory")
        return {"bytes": len(data), **self.artifact_dict}
