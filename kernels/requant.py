"""Requantization on store (int32 accumulator -> int8), bit-for-bit what the RTL store path does.

Per output channel ``c`` the store path computes::

    y = clamp(((acc * M[c] + R[c]) >> S[c]) + zp, lo, hi)
    R[c] = 1 << (S[c] - 1) if S[c] > 0 else 0

with ``acc`` the int32 accumulator (bias included), ``M`` a signed 32-bit multiplier, ``S`` a
shift in 0..63, ``>>`` an arithmetic (flooring) shift, ``zp`` the int8 output zero point and
``lo``/``hi`` the activation clamp (none, ReLU or ReLU6). Adding ``R`` before flooring rounds
half up (towards +infinity). See ``docs/requant.md``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "INT8_MAX",
    "INT8_MIN",
    "INT32_MAX",
    "INT32_MIN",
    "SHIFT_MAX",
    "RequantParams",
    "random_requant",
    "requantize",
]

INT8_MIN, INT8_MAX = -(1 << 7), (1 << 7) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
SHIFT_MAX = 63

ACTIVATIONS = ("none", "relu", "relu6")

Activation = Literal["none", "relu", "relu6"]

IntOrInts = int | Sequence[int] | np.ndarray
FloatOrFloats = float | Sequence[float] | np.ndarray


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _int_tuple(name: str, values: IntOrInts) -> tuple[int, ...]:
    """``values`` (an integer or a 1-D sequence of integers) as a tuple of Python ints."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim > 1:
        raise ValueError(
            f"{name} must be an integer or a 1-D sequence of integers (one per channel), "
            f"not an array of shape {arr.shape}"
        )
    items = [arr.item()] if arr.ndim == 0 else arr.tolist()
    for i, v in enumerate(items):
        if not _is_int(v):
            where = f"{name}[{i}]" if arr.ndim else name
            raise TypeError(f"{where} must be an integer, not {v!r} ({type(v).__name__})")
    return tuple(int(v) for v in items)


@dataclass(frozen=True)
class RequantParams:
    """Per-channel requantization parameters of one layer's int32 -> int8 store.

    Parameters
    ----------
    multiplier : int or sequence of int
        Signed 32-bit fixed-point multiplier ``M`` per output channel, in
        ``-2**31 .. 2**31 - 1``. A single integer (or a length-1 sequence) is a per-tensor
        multiplier that applies to every channel. Stored as a tuple of Python ints.
    shift : int or sequence of int
        Right shift ``S`` per output channel, in ``0..63``. A single integer is used for every
        channel of ``multiplier``; a sequence must have the same length as ``multiplier``.
    zero_point : int
        Output zero point ``zp``, in the int8 range ``-128..127``.
    act : {"none", "relu", "relu6"}
        Activation folded into the output clamp; see `lo` and `hi`.
    six : int or None
        For ``act="relu6"`` only (and then required): the quantized value of 6.0 in the output
        domain, i.e. ``zero_point + round(6 / out_scale)``. It may exceed 127 (the clamp then
        stops at 127) but must be ``>= zero_point``.

    Notes
    -----
    The real multiplier a channel implements is ``M * 2**-S`` (see `real_multiplier`); build the
    parameters from real scales with `from_scale`.
    """

    multiplier: tuple[int, ...]
    shift: tuple[int, ...]
    zero_point: int = 0
    act: Activation = "none"
    six: int | None = None

    # ---------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        mult = _int_tuple("multiplier", self.multiplier)
        if not mult:
            raise ValueError("multiplier is empty: give at least one channel's multiplier")
        shift = _int_tuple("shift", self.shift)
        if np.ndim(self.shift) == 0:
            shift = shift * len(mult)
        if len(shift) != len(mult):
            raise ValueError(
                f"shift has {len(shift)} entries but multiplier has {len(mult)}: give one shift "
                f"per channel, or a single integer shift for all channels"
            )
        for i, m in enumerate(mult):
            if not INT32_MIN <= m <= INT32_MAX:
                raise ValueError(
                    f"multiplier[{i}] = {m} does not fit in a signed 32-bit register "
                    f"({INT32_MIN}..{INT32_MAX}); build the parameters with "
                    f"RequantParams.from_scale to get a Q31 mantissa and shift"
                )
        for i, s in enumerate(shift):
            if not 0 <= s <= SHIFT_MAX:
                raise ValueError(f"shift[{i}] = {s} must be in 0..{SHIFT_MAX}")
        object.__setattr__(self, "multiplier", mult)
        object.__setattr__(self, "shift", shift)

        if not _is_int(self.zero_point):
            raise TypeError(
                f"zero_point must be an integer, not {self.zero_point!r} "
                f"({type(self.zero_point).__name__})"
            )
        if not INT8_MIN <= self.zero_point <= INT8_MAX:
            raise ValueError(
                f"zero_point must be in the int8 range {INT8_MIN}..{INT8_MAX}, "
                f"not {self.zero_point}"
            )
        object.__setattr__(self, "zero_point", int(self.zero_point))

        if self.act not in ACTIVATIONS:
            raise ValueError(
                f"act must be one of {', '.join(map(repr, ACTIVATIONS))}, not {self.act!r}"
            )
        if self.act == "relu6":
            if self.six is None:
                raise ValueError(
                    "act='relu6' needs six, the quantized value of 6.0 "
                    "(zero_point + round(6 / out_scale)); or use RequantParams.from_scale "
                    "with out_scale=..."
                )
            if not _is_int(self.six):
                raise TypeError(
                    f"six must be an integer, not {self.six!r} ({type(self.six).__name__})"
                )
            if self.six < self.zero_point:
                raise ValueError(
                    f"six = {self.six} is below zero_point = {self.zero_point}: six is the "
                    f"quantized 6.0 (zero_point + round(6 / out_scale)), so it must be "
                    f">= zero_point"
                )
            object.__setattr__(self, "six", int(self.six))
        elif self.six is not None:
            raise ValueError(
                f"six = {self.six!r} is only meaningful with act='relu6', not act={self.act!r}; "
                f"leave six=None"
            )

    # ---------------------------------------------------------------- derived values
    def channel_slice(self, start: int, stop: int) -> RequantParams:
        """The parameters of output channels ``start..stop-1`` (itself when it has one channel
        for all): a segment's share of a layer's, `kernels.lower.lower_segments`."""
        if self.channels == 1:
            return self
        if not 0 <= start < stop <= self.channels:
            raise ValueError(f"channels {start}..{stop - 1} outside 0..{self.channels - 1}")
        return dataclasses.replace(
            self, multiplier=self.multiplier[start:stop], shift=self.shift[start:stop]
        )

    @property
    def channels(self) -> int:
        """Number of channels (1 means per-tensor: it applies to every channel)."""
        return len(self.multiplier)

    @property
    def lo(self) -> int:
        """Lower clamp bound: -128 for ``none``, ``max(zero_point, -128)`` for ReLU/ReLU6."""
        if self.act == "none":
            return INT8_MIN
        return max(self.zero_point, INT8_MIN)

    @property
    def hi(self) -> int:
        """Upper clamp bound: 127, or ``min(six, 127)`` for ReLU6."""
        if self.act == "relu6":
            assert self.six is not None  # checked in __post_init__
            return min(self.six, INT8_MAX)
        return INT8_MAX

    @property
    def rounding(self) -> tuple[int, ...]:
        """Rounding addend ``R = 1 << (S - 1)`` (0 when ``S == 0``) per channel."""
        return tuple((1 << (s - 1)) if s > 0 else 0 for s in self.shift)

    @property
    def real_multiplier(self) -> tuple[float, ...]:
        """The real multiplier each channel implements, ``M * 2**-S``."""
        return tuple(math.ldexp(m, -s) for m, s in zip(self.multiplier, self.shift, strict=True))

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_scale(
        cls,
        real_multipliers: FloatOrFloats,
        *,
        zero_point: int = 0,
        act: Activation = "none",
        out_scale: float | None = None,
    ) -> RequantParams:
        """Parameters from positive real multipliers, the gemmlowp/TFLite way.

        Each real multiplier ``r`` (typically ``in_scale * w_scale[c] / out_scale``; it may be
        above 1 or tiny) is written as ``r = m * 2**e`` with ``m`` in ``[0.5, 1)``
        (``math.frexp``). The mantissa becomes the Q31 fixed-point integer
        ``M = round(m * 2**31)`` in ``[2**30, 2**31)`` and the shift ``S = 31 - e``, so that
        ``r ~= M * 2**-S`` with a relative error of at most ``2**-31``. Rounding is half up and
        exact (rational arithmetic); if it carries ``M`` to ``2**31``, ``M`` is halved and ``S``
        decremented. ``S`` is clipped to 0..63:

        * tiny ``r`` (below ``2**-33``, which would need ``S > 63``) keep ``S = 63`` and get
          ``M = round(r * 2**63) < 2**30``, i.e. fewer mantissa bits (down to ``M = 0``);
        * ``r >= 2**31 - 1/2`` would need ``S < 0``, which the store path cannot do; that is
          an error (such a multiplier saturates every non-zero accumulator anyway).

        Parameters
        ----------
        real_multipliers : float or sequence of float
            Positive, finite real multiplier per output channel (one value: per-tensor).
        zero_point : int
            Output zero point, -128..127.
        act : {"none", "relu", "relu6"}
            Activation folded into the clamp.
        out_scale : float, optional
            Output scale (real value of one int8 step); required for ``act="relu6"``, where
            ``six = zero_point + round(6 / out_scale)`` (rounded half up, exactly). Ignored
            otherwise.

        Returns
        -------
        RequantParams

        Raises
        ------
        ValueError
            A multiplier that is not positive and finite or is too large, a missing or bad
            ``out_scale`` for ReLU6, or any check of `RequantParams`.
        """
        reals = np.asarray(real_multipliers, dtype=object)
        if reals.ndim > 1:
            raise ValueError(
                f"real_multipliers must be a number or a 1-D sequence (one per channel), "
                f"not an array of shape {reals.shape}"
            )
        items = [reals.item()] if reals.ndim == 0 else reals.tolist()
        mults: list[int] = []
        shifts: list[int] = []
        for i, r in enumerate(items):
            where = f"real_multipliers[{i}]" if reals.ndim else "real_multipliers"
            if not isinstance(r, int | float | np.integer | np.floating) or isinstance(
                r, bool | np.bool_
            ):
                raise TypeError(f"{where} must be a real number, not {r!r}")
            r = float(r)
            if not (math.isfinite(r) and r > 0.0):
                raise ValueError(
                    f"{where} = {r!r} must be positive and finite "
                    f"(in_scale * w_scale / out_scale of positive scales)"
                )
            _, e = math.frexp(r)  # r = mantissa * 2**e, mantissa in [0.5, 1)
            s = min(31 - e, SHIFT_MAX)
            m = 0 if s < 0 else math.floor(Fraction(r) * (1 << s) + Fraction(1, 2))
            if m == 1 << 31:  # rounding carried out of the Q31 mantissa
                m, s = m >> 1, s - 1
            if s < 0:
                raise ValueError(
                    f"{where} = {r!r} is too large: the store path implements M * 2**-S with "
                    f"M < 2**31 and S >= 0, so real multipliers must be below 2**31 - 1/2; "
                    f"check the scales (in_scale * w_scale / out_scale)"
                )
            mults.append(m)
            shifts.append(s)

        six: int | None = None
        if act == "relu6":
            if out_scale is None:
                raise ValueError(
                    "act='relu6' needs out_scale (the output's real value per int8 step) to "
                    "compute six = zero_point + round(6 / out_scale)"
                )
            if not (math.isfinite(out_scale) and out_scale > 0.0):
                raise ValueError(f"out_scale = {out_scale!r} must be positive and finite")
            if not _is_int(zero_point):
                raise TypeError(f"zero_point must be an integer, not {zero_point!r}")
            six = int(zero_point) + math.floor(Fraction(6) / Fraction(out_scale) + Fraction(1, 2))
        return cls(tuple(mults), tuple(shifts), zero_point=zero_point, act=act, six=six)


def requantize(acc: np.ndarray, params: RequantParams, *, channel_axis: int = -1) -> np.ndarray:
    """Requantize int32 accumulators to int8, exactly as the RTL store path does.

    Computes ``clamp(((acc * M + R) >> S) + zero_point, lo, hi)`` per channel with
    ``R = 1 << (S - 1)`` (0 when ``S == 0``) and a flooring (arithmetic) shift, so results
    round half up. Every intermediate is exact: no float arithmetic is involved.

    Parameters
    ----------
    acc : integer array, at least 1-D
        Accumulators (bias included), each in the signed 32-bit range. Wrap wider results with
        ``kernels.gemm.wrap_signed(acc, 32)`` first, as the accumulator register does.
    params : RequantParams
        Per-channel multipliers and shifts, zero point and activation clamp.
    channel_axis : int
        Axis of ``acc`` that indexes output channels; its length must equal
        ``params.channels``, unless ``params.channels == 1`` (per-tensor parameters).

    Returns
    -------
    int8 array of the same shape as ``acc``.

    Raises
    ------
    TypeError
        ``acc`` does not hold integers or ``params`` is not a `RequantParams`.
    ValueError
        ``acc`` is 0-D or outside the int32 range, ``channel_axis`` is out of range, or the
        channel counts differ.
    """
    if not isinstance(params, RequantParams):
        raise TypeError(f"params must be a RequantParams, not {type(params).__name__}")
    acc = np.asarray(acc)
    if not (np.issubdtype(acc.dtype, np.integer) and acc.dtype != np.bool_):
        raise TypeError(f"acc must hold integers (int32 accumulators), not {acc.dtype}")
    if acc.ndim == 0:
        raise ValueError("acc must be at least 1-D (it needs a channel axis); got a scalar")
    if not -acc.ndim <= channel_axis < acc.ndim:
        raise ValueError(
            f"channel_axis = {channel_axis} is out of range for acc of shape {acc.shape} "
            f"(valid: {-acc.ndim}..{acc.ndim - 1})"
        )
    axis = channel_axis % acc.ndim
    nch = acc.shape[axis]
    if params.channels not in (1, nch):
        raise ValueError(
            f"acc has {nch} channels along axis {channel_axis} (shape {acc.shape}) but params "
            f"has {params.channels}; pass the right channel_axis or one multiplier per channel"
        )
    if acc.size and (int(acc.min()) < INT32_MIN or int(acc.max()) > INT32_MAX):
        raise ValueError(
            f"acc holds values outside the int32 range ({int(acc.min())}..{int(acc.max())}); "
            f"wrap them like the accumulator register with kernels.gemm.wrap_signed(acc, 32)"
        )

    bshape = [1] * acc.ndim
    bshape[axis] = params.channels
    m = np.array(params.multiplier, dtype=np.int64).reshape(bshape)
    s = np.array(params.shift, dtype=np.int64).reshape(bshape)

    # |acc * M| <= 2**62 fits in int64, but acc * M + R does not in one corner:
    # acc = M = -2**31 with S = 63 gives 2**62 + 2**62 = 2**63. So halve before adding R.
    # With p = acc * M = 2 * (p >> 1) + (p & 1) and S >= 1, nested floors give
    #     (p + R) >> S == ((p >> 1) + c) >> (S - 1),  c = (p & 1) if S == 1 else R >> 1,
    # because floor((p + R) / 2) = (p >> 1) + floor(((p & 1) + R) / 2) and R is even for S >= 2.
    # Every intermediate stays within +-2**62.
    p = acc.astype(np.int64) * m
    c = np.where(s >= 2, np.left_shift(np.int64(1), np.maximum(s - 2, 0)), p & 1)
    shifted = np.where(s == 0, p, ((p >> 1) + c) >> np.maximum(s - 1, 0))
    y = np.clip(shifted + params.zero_point, params.lo, params.hi)
    return y.astype(np.int8)


def random_requant(
    rng: np.random.Generator,
    channels: int,
    *,
    k: int = 256,
    act: Activation = "none",
    zero_point: int | None = None,
) -> RequantParams:
    """Realistic random requantization parameters for tests and benches.

    A dot product of ``k`` independent, uniform int8 x int8 terms has a standard deviation of
    about ``128**2 / 3 * sqrt(k)``, so the real multiplier ``48 / (128**2 * sqrt(k))`` maps it
    to about 16 output steps (the int8 range spans +-8 of them), jittered per channel by a
    log-uniform factor in [1/2, 2] like per-channel weight scales.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible tests).
    channels : int
        Number of output channels (>= 1).
    k : int
        Depth of the layer's dot products (reduction length), >= 1.
    act : {"none", "relu", "relu6"}
        Activation; for ReLU6 an output scale is drawn so that 6.0 is 48..255 steps.
    zero_point : int, optional
        Output zero point; by default drawn from -16..16 for ``none`` and -128..-100 for
        ReLU/ReLU6 (whose outputs are non-negative, so the zero point sits low).

    Returns
    -------
    RequantParams
    """
    if not _is_int(channels) or channels < 1:
        raise ValueError(f"channels must be a positive integer, not {channels!r}")
    if not _is_int(k) or k < 1:
        raise ValueError(f"k (dot-product depth) must be a positive integer, not {k!r}")
    if act not in ACTIVATIONS:
        raise ValueError(f"act must be one of {', '.join(map(repr, ACTIVATIONS))}, not {act!r}")
    if zero_point is None:
        zero_point = int(rng.integers(-16, 17) if act == "none" else rng.integers(-128, -99))
    base = 48.0 / (128.0**2 * math.sqrt(k))
    reals = base * np.exp2(rng.uniform(-1.0, 1.0, size=channels))
    out_scale = 6.0 / float(rng.uniform(48.0, 255.0)) if act == "relu6" else None
    return RequantParams.from_scale(
        reals.tolist(), zero_point=zero_point, act=act, out_scale=out_scale
    )
