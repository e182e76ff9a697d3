# SPDX-License-Identifier: Apache-2.0
"""Index forms for get_slice conformance against the reference safetensors (0.8.0): a fixed list
of the forms whose handling differs between rule sets (32-bit ints, unsigned slice bounds,
floats, lists, None, Ellipsis placement, steps, bools, numpy and torch scalars) and a seeded
random mix of them. tests/python/test_compat_slice.py runs each against the reference and
weightlift, for numpy and torch handles, and compares results or exception type and text."""
import random

import numpy as np

E = Ellipsis
BIG = 2 ** 31

# Tensors of the test file: name -> shape (float32 values 0..n-1, int16 for "v").
SHAPES = {"a": (3, 4, 5), "s": (), "e": (0, 3), "v": (7,), "w": (6, 1, 2, 1)}

FIXED = [
    0, 1, 2, 3, -1, -3, -4, True, False, np.int64(1), np.int32(-1), np.uint8(1), np.bool_(True),
    BIG - 1, BIG, -BIG, -BIG - 1, 2 ** 63, 2 ** 64, -2 ** 63, 1.0, 1.5, np.float32(1), None,
    "a", b"a", [], [0], [0, 1], [[0]], [E], [slice(0, 1)], (), (0,), (0, 1), (0, 1, 2),
    (0, 1, 2, 0), (0, 0, 0, -1), (0, 0, 0, E), (E, 0, 0, 0, 0),
    slice(None), slice(1, None), slice(None, 2), slice(1, 2), slice(0, 0), slice(3, None),
    slice(4, None), slice(None, 4), slice(3, 3), slice(5, 5), slice(-1, None), slice(None, -1),
    slice(0, 3, 2), slice(1, None, 2), slice(0, 5, 7), slice(None, None, -1),
    slice(None, None, 0), slice(1.0, 2), slice(0, 2.0), slice(None, None, 1.0), slice(True, None),
    slice(np.int64(1), None), slice(BIG, None), slice(None, BIG), slice(None, 2 ** 64),
    slice(2 ** 70, None), slice(-2 ** 70, None), slice(0, 3, BIG), slice(None, None, 2 ** 63),
    slice(None, None, -2 ** 70), E, (E,), (E, 0), (0, E), (0, E, 0), (E, 5), (E, -6), (E, E),
    (E, 1.5), (0, E, 1.5), (E, None), (1.5, E, E), (E, 0, 0, -9), (0, E, -9), (E, 10, 0),
    (E, slice(None, 9)), (slice(None), E, 5), (1, E, -1), (1, E, 1, 1, 1), (None, 0), (0, None),
    ([], 0), (0, []), ([0], 0), (0, ()), ((0, 1),), (slice(None), [0]), np.array(1),
    np.array([0, 1]), np.array([[1]]), (1, 1.0), (-9, slice(None, -1)), (slice(None, -1), -9),
    (slice(None, None, 0), -9), (-9, slice(None, None, 0)), (slice(None, -1, 0),),
    (slice(1.5, None, 0),), (slice(-1, None, 2 ** 70),), (2 ** 40, -9), (-9, 2 ** 40),
    (slice(None, -1), 2 ** 40), (9, -6), (9, 9), (slice(5, None), 9), (9, slice(5, None)),
    (slice(0, 9), slice(0, 9)), (slice(2, 2), 4, 5), (slice(None, 9), -1), (slice(None, 3, 2), 9),
    (slice(0, 0), 9), (0, 0, slice(0, 9, 2)), (0, 0, slice(5, 9, 2)), (0, 0, slice(0, 6, 2)),
    (0, 0, slice(3, 3)), (slice(None, None, 2), slice(None, None, 3), slice(None, None, 4)),
    (slice(None),) * 4, (slice(None),) * 3 + (E,), (0,) * 3 + (E,), (slice(0, 5),),
    (E, slice(5, None)), (E, slice(6, 7)), (slice(2, None), -1), (slice(2, None), -5),
    (slice(2, None), -6), (slice(None), slice(None), slice(1, 4, 2)),
]

# Reversed slices: the reference crashes (SystemError / a Rust panic "capacity overflow");
# weightlift returns the empty result numpy gives. Documented in docs/compat.md.
REVERSED = [slice(2, 1), (0, 0, slice(2, 1)), (slice(1, 0), 0), (0, slice(3, 1)),
            (slice(True, False), 0)]

_ATOMS = [0, 1, 2, -1, -2, -5, 4, 6, 9, BIG, -BIG - 1, 1.5, None, E, [], [0], True,
          np.int64(2), slice(None), slice(1, None), slice(None, 2), slice(0, 0), slice(1, 3),
          slice(None, None, 2), slice(0, 9), slice(-1, None), slice(None, None, 0),
          slice(2 ** 64, None), slice(1.0, None)]


def random_forms(seed, count):
    """count seeded random index forms: tuples of 0-5 atoms (sometimes bare, sometimes a list)."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        k = rnd.randrange(0, 6)
        parts = tuple(rnd.choice(_ATOMS) for _ in range(k))
        r = rnd.random()
        if k == 1 and r < 0.4:
            out.append(parts[0])
        elif r < 0.05:
            out.append(list(parts))
        else:
            out.append(parts)
    return out


def is_reversed(idx):
    """True when idx holds a slice whose explicit start is past its stop (a REVERSED form)."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    for p in parts:
        if isinstance(p, slice) and p.start is not None and p.stop is not None:
            try:
                if int(p.start) > int(p.stop):
                    return True
            except (TypeError, ValueError):
                pass
    return False
