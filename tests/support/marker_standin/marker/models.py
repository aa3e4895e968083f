import os
from typing import Any


def create_model_dict() -> dict[str, Any]:
    return {"weights_from": os.environ.get("MODEL_CACHE_DIR")}
