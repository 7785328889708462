"""CRC-32 (as gzip and ``zlib.crc32``) for a body made of cached pieces, without zlib letting
go of the GIL.

A gzip answer ends with the CRC-32 of the whole text. Computing it over 10 MB on every scrape
costs ~7 ms, and ``zlib.crc32`` lets go of the GIL above 5 KiB: with the daemon's thread busy,
taking the GIL back costs up to the switch interval (5 ms) each time. Instead, each cached
piece keeps its own CRC and a :class:`Shift` for its length, and a scrape chains them with
:meth:`Shift.combine` (about a microsecond each, the GIL held), as zlib's ``crc32_combine``
does; text without a cached CRC goes through :func:`crc32`, in pieces small enough for zlib
to keep the GIL.

The arithmetic is zlib's (crc32.c, ``multmodp`` and ``x2nmodp``): polynomials over GF(2) in
reflected bit order, modulo the CRC-32 polynomial.
"""

from __future__ import annotations

import zlib
from array import array

__all__ = ["PIECE", "Shift", "crc32"]

#: zlib.crc32 lets go of the GIL above 5 KiB (CPython's zlibmodule.c).
PIECE = 5 * 1024
_POLY = 0xEDB88320  # the CRC-32 polynomial, reflected


def crc32(data: bytes, crc: int = 0) -> int:
    """``zlib.crc32(data, crc)``, in pieces of at most :data:`PIECE` bytes."""
    if len(data) <= PIECE:
        return zlib.crc32(data, crc)
    view = memoryview(data)
    for start in range(0, len(data), PIECE):
        crc = zlib.crc32(view[start:start + PIECE], crc)
    return crc


def _times_x(value: int) -> int:
    return (value >> 1) ^ _POLY if value & 1 else value >> 1


def _nibble_tables(a: int) -> array[int]:
    """For the map ``c -> a * c mod P``: 8 tables of 16 entries (one per 4 bits of ``c``)."""
    basis = [0] * 32  # basis[i] = a * (the polynomial of bit i) = a * x^(31 - i)
    value = a
    for i in range(31, -1, -1):
        basis[i] = value
        value = _times_x(value)
    table = array("I", bytes(4 * 128))
    for nibble in range(8):
        base = 16 * nibble
        for v in range(1, 16):
            low = v & -v
            table[base + v] = table[base + (v ^ low)] ^ basis[4 * nibble + low.bit_length() - 1]
    return table


def _apply(table: array[int], c: int) -> int:
    return (table[c & 15] ^ table[16 + (c >> 4 & 15)] ^ table[32 + (c >> 8 & 15)]
            ^ table[48 + (c >> 12 & 15)] ^ table[64 + (c >> 16 & 15)]
            ^ table[80 + (c >> 20 & 15)] ^ table[96 + (c >> 24 & 15)] ^ table[112 + (c >> 28)])


# x^(2^k) mod P for k = 0..31, each as nibble tables (zlib's x2n_table).
_X2N: list[array[int]] = []
_power = 1 << 30  # x^1
for _ in range(32):
    _X2N.append(_nibble_tables(_power))
    _power = _apply(_X2N[-1], _power)  # squared
del _power


class Shift:
    """Appending ``length`` bytes to a text, as seen by its CRC: with ``crc_b`` the CRC of
    those bytes, :meth:`combine` turns the text's CRC into the longer text's.
    Making one costs ~20 µs; combining ~1 µs."""

    __slots__ = ("_table", "length")

    def __init__(self, length: int) -> None:
        if length < 0:
            raise ValueError("length must not be negative")
        self.length = length
        power, n, k = 1 << 31, length, 3  # x^0; the shift is x^(8 * length)
        while n:
            if n & 1:
                power = _apply(_X2N[k & 31], power)
            n >>= 1
            k += 1
        self._table = _nibble_tables(power)

    def combine(self, crc_a: int, crc_b: int) -> int:
        """The CRC-32 of ``a + b`` from ``crc32(a)`` and ``crc32(b)``, ``b`` being
        ``length`` bytes long (zlib's ``crc32_combine``)."""
        t, c = self._table, crc_a  # _apply, inlined: this runs once per piece per scrape
        return (t[c & 15] ^ t[16 + (c >> 4 & 15)] ^ t[32 + (c >> 8 & 15)]
                ^ t[48 + (c >> 12 & 15)] ^ t[64 + (c >> 16 & 15)] ^ t[80 + (c >> 20 & 15)]
                ^ t[96 + (c >> 24 & 15)] ^ t[112 + (c >> 28)] ^ crc_b)
