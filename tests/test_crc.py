"""Tests for monitor.crc: CRC-32 chained from pieces equals zlib's over the whole text."""

from __future__ import annotations

import random
import zlib

import pytest

from monitor.crc import PIECE, Shift, crc32


@pytest.mark.parametrize("seed", range(5))
def test_combine_equals_crc_of_the_joined_text(seed):
    rng = random.Random(seed)
    lengths = [0, 1, 2, 3, 4, 5, 255, 256, PIECE, PIECE + 1, 65535, 65536, 70001]
    for _ in range(200):
        a = rng.randbytes(rng.randrange(0, 3000))
        b = rng.randbytes(rng.choice(lengths) if rng.random() < 0.3 else rng.randrange(0, 9000))
        shift = Shift(len(b))
        assert shift.length == len(b)
        assert shift.combine(zlib.crc32(a), zlib.crc32(b)) == zlib.crc32(a + b)


def test_chaining_many_pieces():
    rng = random.Random(7)
    pieces = [rng.randbytes(rng.randrange(0, 20000)) for _ in range(60)]
    crc = 0
    for piece in pieces:
        crc = Shift(len(piece)).combine(crc, zlib.crc32(piece))
    assert crc == zlib.crc32(b"".join(pieces))


@pytest.mark.parametrize("length", [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 17, 200_000])
def test_crc32_in_pieces_equals_zlib(length):
    data = random.Random(length).randbytes(length)
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data, 0xDEADBEEF) == zlib.crc32(data, 0xDEADBEEF)


def test_negative_length_is_refused():
    with pytest.raises(ValueError, match="negative"):
        Shift(-1)
