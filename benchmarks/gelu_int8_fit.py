"""The table of csrc/simd512.h's gelu512_for_int8: x Phi(x) = max(x, 0) - h(|x|), h(a) =
a (1 - Phi(a)), as 16 cubics in u, the position inside each of 16 equal intervals of [0, 6)
(h(6) = 6e-9: beyond, the last cubic's value at 6, ~0). Each cubic a least-squares fit on
Chebyshev nodes (near minimax), reweighted (Lawson) a few rounds, rounded to float32. Prints
the C table and the worst error over a dense grid (float64 evaluation of the float32
coefficients; the kernel's own float32 error is measured by tests/nn/test_gelu_int8.py).

    python benchmarks/gelu_int8_fit.py
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

INTERVALS, DEGREE, END = 16, 3, 6.0


def h(a: np.ndarray) -> np.ndarray:
    return a * ndtr(-a)


def fit(i: int) -> np.ndarray:
    """The float32 coefficients (c0 .. c3, in u) of interval i."""
    width = END / INTERVALS
    k = np.arange(400)
    u = 0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / len(k))
    y = h((i + u) * width)
    weights = np.ones_like(u)
    for _ in range(30):  # Lawson: weight the worst points up, towards the minimax fit
        c = np.polynomial.polynomial.polyfit(u, y, DEGREE, w=np.sqrt(weights))
        err = np.abs(np.polynomial.polynomial.polyval(u, c) - y)
        weights *= err / err.sum() * len(u) + 1e-12
    return c.astype(np.float32)


def main() -> None:
    table = np.array([fit(i) for i in range(INTERVALS)])  # (16, 4)
    width = END / INTERVALS
    worst = 0.0
    for i, c in enumerate(table):
        u = np.linspace(0, 1, 20001)
        got = np.polynomial.polynomial.polyval(u, c.astype(np.float64))
        worst = max(worst, float(np.abs(got - h((i + u) * width)).max()))
    print(f"worst |h fit - h| over [0, {END}): {worst:.3g}; h({END}) = {h(np.float64(END)):.3g}")
    for d in range(DEGREE + 1):
        print("    {" + ", ".join(f"{v:.9g}f" for v in table[:, d]) + "},")


if __name__ == "__main__":
    main()
