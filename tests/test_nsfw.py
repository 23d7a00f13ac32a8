"""open_nsfw scoring: exact parity with the reference, the fast mode's bound, the micro-batcher."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from mediaguard.media.decode import decode
from mediaguard.signals.batcher import MicroBatcher
from mediaguard.signals.nsfw import NsfwSignal, preprocess_exact

from fixtures.reference import reference_scores, reference_session

skimage = pytest.importorskip("skimage")
DATA = Path(skimage.__file__).parent / "data"
PHOTOS = [
    "astronaut.png", "logo.png", "camera.png", "chelsea.png", "coffee.png",
    "hubble_deep_field.jpg", "retina.jpg", "rocket.jpg", "horse.png", "moon.png",
]  # fmt: skip
MAX_PIXELS = 100_000_000


@pytest.fixture(scope="module")
def reference() -> Iterator[ort.InferenceSession]:
    yield reference_session()


def reference_score(session: ort.InferenceSession, content: bytes) -> float:
    return float(reference_scores(session, [content])[0])


@pytest.fixture(scope="module")
def exact() -> Iterator[NsfwSignal]:
    signal = NsfwSignal("exact", threads=2)
    yield signal
    signal.close()


@pytest.fixture(scope="module")
def fast() -> Iterator[NsfwSignal]:
    signal = NsfwSignal("fast", threads=2)
    yield signal
    signal.close()


def score(signal: NsfwSignal, content: bytes) -> float:
    return signal.extract(decode(content, max_pixels=MAX_PIXELS, draft=signal.draft_size))


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    with io.BytesIO() as buffer:
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    """A 12 MP photo-like JPEG, the size a wiki's originals are."""
    with Image.open(DATA / "coffee.png") as image:
        big = np.asarray(image.convert("RGB").resize((4000, 3000)), dtype=np.int16)
    noise = np.random.default_rng(1).integers(-8, 9, size=big.shape, dtype=np.int16)
    return encoded(Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)), "JPEG")


@pytest.mark.parametrize(
    ("name", "expected"), [("astronaut.png", 0.03170265), ("logo.png", 0.03518099)]
)
def test_exact_matches_the_anchor_scores(exact: NsfwSignal, name: str, expected: float) -> None:
    assert score(exact, (DATA / name).read_bytes()) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("name", PHOTOS)
def test_exact_matches_the_reference(
    exact: NsfwSignal, reference: ort.InferenceSession, name: str
) -> None:
    content = (DATA / name).read_bytes()
    assert score(exact, content) == pytest.approx(reference_score(reference, content), abs=1e-4)


@pytest.mark.parametrize("name", PHOTOS)
def test_fast_stays_within_a_hundredth(
    fast: NsfwSignal, reference: ort.InferenceSession, name: str
) -> None:
    content = (DATA / name).read_bytes()
    assert score(fast, content) == pytest.approx(reference_score(reference, content), abs=0.01)


def test_large_jpeg_exact_and_fast(
    exact: NsfwSignal, fast: NsfwSignal, reference: ort.InferenceSession, large_jpeg: bytes
) -> None:
    expected = reference_score(reference, large_jpeg)
    drafted = decode(large_jpeg, max_pixels=MAX_PIXELS, draft=fast.draft_size)
    assert drafted.reduced and drafted.image.size == (2000, 1500)
    assert fast.extract(drafted) == pytest.approx(expected, abs=0.01)
    assert score(exact, large_jpeg) == pytest.approx(expected, abs=1e-4)


def test_versions_tell_the_modes_apart(exact: NsfwSignal, fast: NsfwSignal) -> None:
    assert exact.version == "open_nsfw/resnet50-1by2-864bb37b/exact"
    assert fast.version in {
        "open_nsfw/resnet50-1by2-864bb37b/fast-bf16",
        "open_nsfw/resnet50-1by2-864bb37b/fast-f32",
    }
    assert exact.draft_size is None and fast.draft_size is not None


def odd_inputs() -> dict[str, bytes]:
    with Image.open(DATA / "chelsea.png") as opened:
        photo = opened.convert("RGB")
    wide = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    frames = [photo.quantize(64), photo.rotate(90).quantize(64)]
    return {
        "grayscale": encoded(photo.convert("L"), "PNG"),
        "palette": encoded(photo.quantize(256), "PNG"),
        "rgba": encoded(photo.convert("RGBA"), "PNG"),
        "cmyk": encoded(photo.convert("CMYK"), "JPEG"),
        "16-bit": encoded(Image.fromarray(wide), "PNG"),
        "animated-gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "tiny": encoded(photo.resize((3, 2)), "BMP"),
    }


@pytest.mark.parametrize(("kind", "content"), list(odd_inputs().items()))
def test_odd_inputs_score(
    exact: NsfwSignal,
    fast: NsfwSignal,
    reference: ort.InferenceSession,
    kind: str,
    content: bytes,
) -> None:
    got = score(exact, content)
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(reference_score(reference, content), abs=1e-4), kind
    assert score(fast, content) == pytest.approx(got, abs=0.01), kind


def test_submit_tensor_does_not_wait(exact: NsfwSignal) -> None:
    content = (DATA / "astronaut.png").read_bytes()
    tensor = exact.preprocess(decode(content, max_pixels=MAX_PIXELS))
    futures = [exact.submit_tensor(tensor) for _ in range(5)]
    scores = {exact.score_of(f.result(timeout=10)) for f in futures}
    assert len(scores) == 1 and scores.pop() == pytest.approx(0.03170265, abs=1e-4)


# -- the micro-batcher ---------------------------------------------------------------------


def test_concurrent_callers_get_their_own_results() -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(
        lambda batch: batch * 2, max_batch=4, max_wait=0.05, observer=lambda n, _: sizes.append(n)
    )
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = batcher(np.full(3, i, dtype=np.float32))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    assert all(np.array_equal(results[i], np.full(3, 2 * i)) for i in range(16))
    assert sum(sizes) == 16 and max(sizes) > 1 and max(sizes) <= 4


def test_a_model_error_reaches_every_waiting_caller() -> None:
    batch_sizes: list[int] = []

    def broken(batch: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(batch))
        raise RuntimeError("model exploded")

    batcher = MicroBatcher(broken, max_batch=8, max_wait=0.2)
    futures = [batcher.submit(np.zeros(2)) for _ in range(5)]
    for future in futures:
        with pytest.raises(RuntimeError, match="model exploded"):
            future.result(timeout=5)
    assert sum(batch_sizes) == 5 and max(batch_sizes) > 1
    # the batcher survives an error: the next call is served
    batcher._fn = lambda batch: batch + 1
    assert np.array_equal(batcher(np.zeros(2)), np.ones(2))
    batcher.close()


def test_close_stops_the_thread() -> None:
    batcher = MicroBatcher(lambda batch: batch, max_batch=2, max_wait=0.001, name="to-close")
    assert batcher(np.ones(1))[0] == 1
    assert any(t.name == "to-close" for t in threading.enumerate())
    started = time.monotonic()
    batcher.close()
    assert time.monotonic() - started < 5
    assert not any(t.name == "to-close" for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(np.ones(1))


def test_onnxruntime_fallback_agrees_with_openvino() -> None:
    from mediaguard.signals.nsfw_model import _load_onnxruntime, _load_openvino, bundled_weights

    weights = bundled_weights()
    openvino_model = _load_openvino(weights, 0, "f32")
    assert openvino_model is not None and openvino_model.precision == "f32"
    fallback = _load_onnxruntime(weights, 0)
    batch = np.stack(
        [
            preprocess_exact(decode((DATA / name).read_bytes(), max_pixels=10**8).image)
            for name in ("astronaut.png", "logo.png", "coffee.png")
        ]
    )
    assert np.allclose(openvino_model.run(batch), fallback.run(batch), atol=1e-6)


SIGNAL_AFTER_RELEASE = """
import ctypes, faulthandler, gc, os, signal, sys

from mediaguard.signals.nsfw_model import OpenVinoModel, load_model


class stack_t(ctypes.Structure):
    _fields_ = [("sp", ctypes.c_void_p), ("flags", ctypes.c_int), ("size", ctypes.c_size_t)]


def signal_stack() -> tuple[int, int, int]:
    current = stack_t()
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(current)) == 0
    return (current.sp or 0, current.flags, current.size)


faulthandler.enable()  # gives this thread a signal stack, as pytest and `python -X` do
before = signal_stack()
first, second = load_model("exact"), load_model("fast")
assert isinstance(first, OpenVinoModel) and isinstance(second, OpenVinoModel)
del first
gc.collect()
del second
gc.collect()
assert signal_stack() == before, (signal_stack(), before)
try:
    os.kill(os.getpid(), signal.SIGINT)
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack layout is Linux's")
def test_releasing_models_keeps_the_signal_stack_so_ctrl_c_works() -> None:
    """OpenVINO's CPU plugin swaps the compiling thread's signal stack and, when two models are
    released in compile order, leaves it on freed memory: the next Ctrl-C was a SIGSEGV."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_RELEASE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "interrupted"
