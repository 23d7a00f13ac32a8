"""PDQ hashing compiled with numba: bit for bit `pdqhash.compute`, without its cache misses or GIL.

`pdqhash.compute` (the binding ThreatExchange's Python hasher and the Hasher-Matcher-Actioner use)
wraps Meta's C++ `pdqHash256FromFloatLuma`. This is a port of that function and of the luma step of
the binding, with the same float32 operations in the same order for every value, so that hashes and
quality are identical. Only the order in which independent values are computed differs:

* The C++ blurs the whole luma image four times (box filter along rows, then along columns, twice),
  and walks each column with a stride of one image row: cache misses on every step once an image is
  larger than the cache, which is why its cost grows faster than the pixel count. Here the image
  is streamed row by row through the four filters: a filter along columns keeps one running sum
  per column (each column sees exactly the sums and differences the C++ computes, in the same
  order) and a ring of the last `window` rows it must subtract again. Apart from these rows and
  one block of rows per stage, nothing the size of the image is held.
* The second pair of passes only computes what the 64 x 64 decimation reads: along rows every
  running sum (each output depends on all before it) but the divisions only in the 64 sampled
  columns, and along columns only those 64 columns.
* Eight rows are filtered along their length at once, so that their running sums (each a long
  chain of dependent float additions) overlap; the divisions by the window size, independent of
  the chains, are done afterwards over the whole row, where they vectorise.

Nothing is fused into a multiply-add or reassociated: numba compiles without fast-math, and its
`error_model="numpy"` only drops the division-by-zero checks (no divisor here is ever zero).

The compiled functions release the GIL, so threads hash in parallel. They are compiled on first
use, which takes seconds (about 10 s on a busy 2-core machine), and cached on disk by numba: in
`__pycache__` next to this file, or when that is read-only in the user's cache directory
(~/.cache/numba), or in $NUMBA_CACHE_DIR. A later process loads them in well under a second. With
no writable place at all, they are compiled again in every process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["compute", "compute_float", "hash_bits", "warm_up"]

F = TypeVar("F", bound=Callable[..., Any])

MIN_HASHABLE_DIM = 5
DOWNSAMPLE = 64  # the C++ decimates to 64 x 64
DCT_SIZE = 16
BLOCK = 8  # rows per block, filtered at once along their length (`_box_sums`)
FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]


def _jit(func: F) -> F:
    """`numba.njit(nogil=True)`, cached on disk when numba finds a writable cache directory."""
    try:
        return cast(F, numba.njit(cache=True, nogil=True, error_model="numpy")(func))
    except RuntimeError:  # "cannot cache function ...: no locator available": compile each start
        return cast(F, numba.njit(cache=False, nogil=True, error_model="numpy")(func))


def _dct_matrix() -> FloatArray:
    """The C++ `dct_matrix_64`: a float scale factor times a double cosine, stored as float."""
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    matrix = np.empty((DCT_SIZE, DOWNSAMPLE), dtype=np.float32)
    for i in range(DCT_SIZE):
        for j in range(DOWNSAMPLE):
            matrix[i, j] = scale * math.cos((math.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1))
    return matrix


_DCT = _dct_matrix()


@_jit
def _window_size(old_dimension: int) -> int:
    """`computeJaroszFilterWindowSize(old_dimension, 64)`."""
    return (old_dimension + 2 * DOWNSAMPLE - 1) // (2 * DOWNSAMPLE)


@_jit
def _divisors(n: int, window: int) -> FloatArray:
    """The window size each output of `box1DFloat` over n values is divided by, as floats."""
    half = (window + 2) // 2
    out = np.empty(n, dtype=np.float32)
    for t in range(half - 1, window):  # phase 2: the window grows
        out[t - half + 1] = np.float32(t + 1)
    for t in range(window, n):  # phase 3: full
        out[t - half + 1] = np.float32(window)
    for q in range(half - 1):  # phase 4: the window shrinks
        out[n - half + 1 + q] = np.float32(window - 1 - q)
    return out


@_jit
def _luma_rows(rgb: ByteArray, row0: int, count: int, out: FloatArray) -> None:
    """The binding's luma: R*0.299 + G*0.587 + B*0.114 in double (numpy's order), cast to float."""
    for k in range(count):
        pixels = rgb[row0 + k].reshape(-1)  # one C-contiguous row: 3.5x faster than rgb[i, j, c]
        line = out[k]
        p = 0
        for j in range(rgb.shape[1]):
            line[j] = np.float32(pixels[p] * 0.299 + pixels[p + 1] * 0.587 + pixels[p + 2] * 0.114)
            p += 3


@_jit
def _box_sums(src: FloatArray, dst: FloatArray, count: int, window: int) -> None:
    """`box1DFloat` along each of the first `count` rows of src, before its divisions: dst gets
    the running sum each output is the quotient of (phases 1-4: the same additions and
    subtractions in the same order as the C++).

    Eight rows at a time: each running sum is a chain of dependent additions, eight of them
    overlap. The divisions are independent of the chain and done apart (`_divide_rows`), where
    they vectorise."""
    n = src.shape[1]
    half = (window + 2) // 2
    r = 0
    while r + 8 <= count:
        x0, x1, x2, x3, x4, x5, x6, x7 = (
            src[r], src[r + 1], src[r + 2], src[r + 3],
            src[r + 4], src[r + 5], src[r + 6], src[r + 7],
        )  # fmt: skip
        y0, y1, y2, y3, y4, y5, y6, y7 = (
            dst[r], dst[r + 1], dst[r + 2], dst[r + 3],
            dst[r + 4], dst[r + 5], dst[r + 6], dst[r + 7],
        )  # fmt: skip
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
        for t in range(half - 1):  # phase 1: accumulate, no writes
            s0 += x0[t]
            s1 += x1[t]
            s2 += x2[t]
            s3 += x3[t]
            s4 += x4[t]
            s5 += x5[t]
            s6 += x6[t]
            s7 += x7[t]
        for t in range(half - 1, window):  # phase 2: writes with a growing window
            s0 += x0[t]
            s1 += x1[t]
            s2 += x2[t]
            s3 += x3[t]
            s4 += x4[t]
            s5 += x5[t]
            s6 += x6[t]
            s7 += x7[t]
            o = t - half + 1
            y0[o], y1[o], y2[o], y3[o], y4[o], y5[o], y6[o], y7[o] = s0, s1, s2, s3, s4, s5, s6, s7
        for t in range(window, n):  # phase 3: full window, add then subtract
            u = t - window
            s0 += x0[t]
            s1 += x1[t]
            s2 += x2[t]
            s3 += x3[t]
            s4 += x4[t]
            s5 += x5[t]
            s6 += x6[t]
            s7 += x7[t]
            s0 -= x0[u]
            s1 -= x1[u]
            s2 -= x2[u]
            s3 -= x3[u]
            s4 -= x4[u]
            s5 -= x5[u]
            s6 -= x6[u]
            s7 -= x7[u]
            o = t - half + 1
            y0[o], y1[o], y2[o], y3[o], y4[o], y5[o], y6[o], y7[o] = s0, s1, s2, s3, s4, s5, s6, s7
        for q in range(half - 1):  # phase 4: subtract only, a shrinking window
            u = n - window + q
            s0 -= x0[u]
            s1 -= x1[u]
            s2 -= x2[u]
            s3 -= x3[u]
            s4 -= x4[u]
            s5 -= x5[u]
            s6 -= x6[u]
            s7 -= x7[u]
            o = n - half + 1 + q
            y0[o], y1[o], y2[o], y3[o], y4[o], y5[o], y6[o], y7[o] = s0, s1, s2, s3, s4, s5, s6, s7
        r += 8
    while r < count:  # the same, one row at a time
        x = src[r]
        y = dst[r]
        s = np.float32(0.0)
        for t in range(half - 1):
            s += x[t]
        for t in range(half - 1, window):
            s += x[t]
            y[t - half + 1] = s
        for t in range(window, n):
            s += x[t]
            s -= x[t - window]
            y[t - half + 1] = s
        for q in range(half - 1):
            s -= x[n - window + q]
            y[n - half + 1 + q] = s
        r += 1


@_jit
def _divide_rows(rows: FloatArray, count: int, div: FloatArray) -> None:
    """The divisions of `box1DFloat` (`sum / current_window_size`) for the sums `_box_sums` left."""
    for k in range(count):
        line = rows[k]
        for j in range(line.shape[0]):
            line[j] = line[j] / div[j]


@_jit
def _column_step(
    sums: FloatArray, ring: FloatArray, row: FloatArray, t: int, window: int, out: FloatArray
) -> bool:
    """Input row t of `box1DFloat` along every column at once, phases 1-3: add row t to each
    column's running sum, from t = window on subtract row t - window (after the add, as in the
    C++), keep row t in the ring of the last `window` rows. From t = half - 1 on, write output row
    t - half + 1 to out and return True."""
    half = (window + 2) // 2
    kept = ring[t % window]  # row t - window, about to be replaced by row t
    n = sums.shape[0]
    if t < half - 1:  # phase 1
        for j in range(n):
            sums[j] = sums[j] + row[j]
            kept[j] = row[j]
        return False
    divisor = np.float32(min(t + 1, window))
    if t < window:  # phase 2
        for j in range(n):
            s = sums[j] + row[j]
            sums[j] = s
            kept[j] = row[j]
            out[j] = s / divisor
    else:  # phase 3
        for j in range(n):
            s = sums[j] + row[j]
            s = s - kept[j]
            sums[j] = s
            kept[j] = row[j]
            out[j] = s / divisor
    return True


@_jit
def _column_drain(
    sums: FloatArray, ring: FloatArray, q: int, n_rows: int, window: int, out: FloatArray
) -> None:
    """Step q of phase 4 of `box1DFloat` along every column: subtract input row
    n_rows - window + q, write output row n_rows - half + 1 + q."""
    kept = ring[(n_rows - window + q) % window]
    divisor = np.float32(window - 1 - q)
    for j in range(sums.shape[0]):
        s = sums[j] - kept[j]
        sums[j] = s
        out[j] = s / divisor


@_jit
def _emit(out: FloatArray, rows: npt.NDArray[np.int64], index: int, line: FloatArray) -> None:
    """Row `index` of the filtered image, in the 64 sampled columns, wherever it is sampled."""
    for q in range(DOWNSAMPLE):
        if rows[q] == index:
            for j in range(DOWNSAMPLE):  # not out[q, :] = line: that costs seconds of compiling
                out[q, j] = line[j]


@_jit
def _second_pass(
    c1: FloatArray,
    count: int,
    first: int,
    window_rows: int,
    window_cols: int,
    div_rows: FloatArray,
    cols: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    scratch: FloatArray,
    sums: FloatArray,
    ring: FloatArray,
    sampled: FloatArray,
    line: FloatArray,
    out: FloatArray,
) -> None:
    """Rows first..first+count-1 of the first pass through the second: the box along rows (every
    running sum, but divided only in the 64 sampled columns), then along the sampled columns;
    the sampled rows of the result go to out."""
    _box_sums(c1, scratch, count, window_rows)
    for k in range(count):
        for q in range(DOWNSAMPLE):
            sampled[q] = scratch[k, cols[q]] / div_rows[cols[q]]
        half = (window_cols + 2) // 2
        if _column_step(sums, ring, sampled, first + k, window_cols, line):
            _emit(out, rows, first + k - half + 1, line)


@_jit
def _decimation(n: int) -> npt.NDArray[np.int64]:
    """`decimateFloat`'s source index for each of the 64 outputs: centres, not corners."""
    out = np.empty(DOWNSAMPLE, dtype=np.int64)
    for o in range(DOWNSAMPLE):
        out[o] = int(((o + 0.5) * n) / DOWNSAMPLE)
    return out


@_jit
def _downsample(rgb: ByteArray) -> FloatArray:
    """Luma, `jaroszFilterFloat` (two passes) and `decimateFloat` to 64 x 64, streamed: rows go
    through the first pass in blocks of BLOCK, its output rows through the second in blocks too."""
    n_rows, n_cols = rgb.shape[0], rgb.shape[1]
    out = np.zeros((DOWNSAMPLE, DOWNSAMPLE), dtype=np.float32)
    # Integers passed on are int64 from the start: a literal 0 would have numba compile one more
    # specialisation of the callee.
    zero = int(np.int64(0))
    if n_rows == DOWNSAMPLE and n_cols == DOWNSAMPLE:  # the C++ takes a 64 x 64 image as it is
        _luma_rows(rgb, zero, int(np.int64(DOWNSAMPLE)), out)
        return out
    window_rows = _window_size(n_cols)  # the box along each row spans columns
    window_cols = _window_size(n_rows)
    half_cols = (window_cols + 2) // 2
    div_rows = _divisors(n_cols, window_rows)
    rows = _decimation(n_rows)
    cols = _decimation(n_cols)

    luma = np.empty((BLOCK, n_cols), dtype=np.float32)
    r1 = np.empty((BLOCK, n_cols), dtype=np.float32)
    sums1 = np.zeros(n_cols, dtype=np.float32)
    ring1 = np.empty((window_cols, n_cols), dtype=np.float32)
    c1 = np.empty((BLOCK, n_cols), dtype=np.float32)  # first-pass output waiting for the second
    scratch = np.empty((BLOCK, n_cols), dtype=np.float32)
    sums2 = np.zeros(DOWNSAMPLE, dtype=np.float32)
    ring2 = np.empty((window_cols, DOWNSAMPLE), dtype=np.float32)
    sampled = np.empty(DOWNSAMPLE, dtype=np.float32)
    line = np.empty(DOWNSAMPLE, dtype=np.float32)

    pending = zero  # rows waiting in c1
    first = zero  # the first-pass output row c1[0] is
    for row0 in range(0, n_rows + half_cols - 1, BLOCK):
        count = min(BLOCK, n_rows - row0)
        if count > 0:
            _luma_rows(rgb, row0, count, luma)
            _box_sums(luma, r1, count, window_rows)
            _divide_rows(r1, count, div_rows)
        for k in range(BLOCK):
            t = row0 + k
            if t < n_rows:  # phases 1-3 along columns
                if not _column_step(sums1, ring1, r1[k], t, window_cols, c1[pending]):
                    continue
            elif t < n_rows + half_cols - 1:  # phase 4
                _column_drain(sums1, ring1, t - n_rows, n_rows, window_cols, c1[pending])
            else:
                break
            pending += 1
            if pending == BLOCK or first + pending == n_rows:  # full, or the last row
                _second_pass(
                    c1, pending, first, window_rows, window_cols, div_rows, cols, rows,
                    scratch, sums2, ring2, sampled, line, out,
                )  # fmt: skip
                first += pending
                pending = zero
    for q in range(half_cols - 1):
        _column_drain(sums2, ring2, q, n_rows, window_cols, line)
        _emit(out, rows, n_rows - half_cols + 1 + q, line)
    return out


@_jit
def _quality(image: FloatArray) -> int:
    """`pdqImageDomainQualityMetric`: quantised vertical then horizontal gradients."""
    hundred = np.float32(100.0)
    full = np.float32(255.0)
    gradient_sum = 0
    for i in range(DOWNSAMPLE - 1):
        for j in range(DOWNSAMPLE):
            d = int(((image[i, j] - image[i + 1, j]) * hundred) / full)
            gradient_sum += abs(d)
    for i in range(DOWNSAMPLE):
        for j in range(DOWNSAMPLE - 1):
            d = int(((image[i, j] - image[i, j + 1]) * hundred) / full)
            gradient_sum += abs(d)
    return min(gradient_sum // 90, 100)


@_jit
def _dct64_to_16(image: FloatArray, dct: FloatArray) -> FloatArray:
    """`dct64To16`: T = D A then B = T D', each sum over k = 0..63 in order."""
    partial = np.zeros((DCT_SIZE, DOWNSAMPLE), dtype=np.float32)
    for i in range(DCT_SIZE):
        for k in range(DOWNSAMPLE):
            factor = dct[i, k]
            for j in range(DOWNSAMPLE):
                partial[i, j] += factor * image[k, j]
    out = np.empty((DCT_SIZE, DCT_SIZE), dtype=np.float32)
    for i in range(DCT_SIZE):
        for j in range(DCT_SIZE):
            s = np.float32(0.0)
            for k in range(DOWNSAMPLE):
                s += partial[i, k] * dct[j, k]
            out[i, j] = s
    return out


@_jit
def _torben(m: FloatArray) -> np.float32:
    """The median of m by Torben Mogensen's method, as the C++ `torben` (which it returns)."""
    n = m.shape[0]
    lo = m[0]
    hi = m[0]
    for i in range(1, n):
        if m[i] < lo:
            lo = m[i]
        if m[i] > hi:
            hi = m[i]
    two = np.float32(2.0)
    while True:
        guess = (lo + hi) / two
        less = 0
        greater = 0
        equal = 0
        max_lt_guess = lo
        min_gt_guess = hi
        for i in range(n):
            if m[i] < guess:
                less += 1
                if m[i] > max_lt_guess:
                    max_lt_guess = m[i]
            elif m[i] > guess:
                greater += 1
                if m[i] < min_gt_guess:
                    min_gt_guess = m[i]
            else:
                equal += 1
        if less <= (n + 1) // 2 and greater <= (n + 1) // 2:
            break
        elif less > greater:
            hi = max_lt_guess
        else:
            lo = min_gt_guess
    if less >= (n + 1) // 2:
        return np.float32(max_lt_guess)
    elif less + equal >= (n + 1) // 2:
        return np.float32(guess)
    return np.float32(min_gt_guess)


@_jit
def _bits(coefficients: FloatArray) -> ByteArray:
    """Bit i*16+j of the hash is set where coefficient (i, j) exceeds the median; returned most
    significant bit first, as `pdqhash.compute` returns them."""
    flat = coefficients.ravel()
    median = _torben(flat)
    out = np.empty(DCT_SIZE * DCT_SIZE, dtype=np.uint8)
    for k in range(DCT_SIZE * DCT_SIZE):
        out[DCT_SIZE * DCT_SIZE - 1 - k] = 1 if flat[k] > median else 0
    return out


@_jit
def _hash_of(image: FloatArray, dct: FloatArray) -> tuple[ByteArray, int]:
    """The bits and quality of the 64 x 64 downsample."""
    return _bits(_dct64_to_16(image, dct)), _quality(image)


@_jit
def _coefficients_of(image: FloatArray, dct: FloatArray) -> tuple[FloatArray, int]:
    """The 16 x 16 DCT coefficients and quality of the 64 x 64 downsample."""
    return _dct64_to_16(image, dct), _quality(image)


def _pixels(rgb: npt.ArrayLike) -> ByteArray:
    pixels = np.asarray(rgb)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"expected a (height, width, 3) uint8 RGB array, got {pixels.dtype} {pixels.shape}"
        )
    return np.ascontiguousarray(pixels)


def compute(rgb: npt.ArrayLike) -> tuple[ByteArray, int]:
    """`pdqhash.compute`: the 256 hash bits, most significant first, and the quality 0..100.

    Images with a side under 5 pixels (or none) hash to zeros with quality 0."""
    pixels = _pixels(rgb)
    if pixels.shape[0] < MIN_HASHABLE_DIM or pixels.shape[1] < MIN_HASHABLE_DIM:
        return np.zeros(DCT_SIZE * DCT_SIZE, dtype=np.uint8), 0
    # Two compiled calls rather than one calling both: numba optimises a caller together with
    # everything it calls, so one more level would add seconds to the first compile.
    return _hash_of(_downsample(pixels), _DCT)


def compute_float(rgb: npt.ArrayLike) -> tuple[FloatArray, int]:
    """`pdqhash.compute_float`: the 16 x 16 DCT coefficients the bits threshold (flattened, last
    coefficient first, as float32) and the quality. Needs at least one pixel."""
    pixels = _pixels(rgb)
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError("cannot hash an empty image")
    coefficients, quality = _coefficients_of(_downsample(pixels), _DCT)
    return coefficients.ravel()[::-1], quality


def warm_up() -> None:
    """Compile (or load from numba's cache) before the first real image needs it."""
    compute(np.zeros((80, 80, 3), dtype=np.uint8))


def hash_bits(bits: ByteArray) -> str:
    """The 64 hex digits of 256 bits, most significant first."""
    return np.packbits(bits).tobytes().hex()
