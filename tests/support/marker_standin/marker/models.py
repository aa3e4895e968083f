import os
from pathlib import Path
from typing import Any


def create_model_dict() -> dict[str, Any]:
    folder = os.environ.get("MODEL_CACHE_DIR")
    if folder and (Path(folder) / "broken").exists():
        raise OSError(f"no model weights in {folder}")
    return {"weights_from": folder}
