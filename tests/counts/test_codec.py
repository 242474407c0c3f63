"""Block codec for sorted count records: the Numba kernels against the Python reference (byte for byte)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpoly.backends.numba.codec import decode_blocks, encode_blocks
from fastpoly.counts.codec import CodecError, block_bound, decode_block_reference, encode_block_reference

MAXU = 2**64 - 1


def _to_words(values, W):
    return np.array([[(v >> (64 * w)) & MAXU for w in range(W)] for v in values], np.uint64).reshape(len(values), W)


def _reference(keys, counts, first, block):
    """Reference bytes and index of all blocks."""
    out, index = [], []
    for a in range(0, keys.shape[0], block):
        secs = encode_block_reference(keys[a:a + block], counts[a:a + block], first[a:a + block])
        out.append(b"".join(secs))
        index.append([min(block, keys.shape[0] - a)] + [len(s) for s in secs])
    return b"".join(out), np.array(index, np.int64).reshape(-1, 4)


@st.composite
def records(draw):
    W = draw(st.integers(1, 4))
    top = 2 ** (64 * W) - 1
    small = draw(st.booleans())
    hi = min(top, 2**20) if small else top
    vals = sorted(set(draw(st.lists(st.integers(0, hi), max_size=60))))
    if draw(st.booleans()):  # the extreme keys: maximal delta 0 -> 2**(64W) - 1
        vals = sorted(set(vals) | {0, top})
    n = len(vals)
    counts = draw(st.lists(st.sampled_from([1, 2, 127, 128, 2**62, 2**63 - 1]) | st.integers(1, 2**63 - 1),
                           min_size=n, max_size=n))
    first = draw(st.lists(st.sampled_from([0, 127, 128, MAXU]) | st.integers(0, MAXU), min_size=n, max_size=n))
    block = draw(st.sampled_from([1, 2, 3, 7, 64, max(1, n)]))
    return _to_words(vals, W), np.array(counts, np.int64), np.array(first, np.uint64), block


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_kernel_matches_reference_and_round_trips(rec):
    keys, counts, first, block = rec
    buf, index = encode_blocks(keys, counts, first, block)
    ref, ref_index = _reference(keys, counts, first, block)
    assert buf.tobytes() == ref
    assert np.array_equal(index, ref_index)
    assert buf.size <= block_bound(keys.shape[0], keys.shape[1])
    k, c, f = decode_blocks(buf, index, keys.shape[1])
    assert np.array_equal(k, keys) and np.array_equal(c, counts) and np.array_equal(f, first)
    # the reference decoder agrees block by block
    pos = 0
    for b, (n, lk, lc, lf) in enumerate(index):
        secs = (ref[pos:pos + lk], ref[pos + lk:pos + lk + lc], ref[pos + lk + lc:pos + lk + lc + lf])
        rk, rc, rf = decode_block_reference(secs, int(n), keys.shape[1])
        a = b * block
        assert np.array_equal(rk, keys[a:a + n]) and np.array_equal(rc, counts[a:a + n])
        assert np.array_equal(rf, first[a:a + n])
        pos += lk + lc + lf


@pytest.mark.parametrize("W", [1, 2, 3, 4])
def test_empty_one_record_and_block_boundary_at_the_end(W):
    for n in (0, 1, 8, 9):
        keys = _to_words([3 * i + (2 ** (64 * W) - 40 if i > 4 else 0) for i in range(n)], W)
        counts = np.arange(1, n + 1, dtype=np.int64)
        first = np.arange(n, dtype=np.uint64)
        buf, index = encode_blocks(keys, counts, first, 4)  # n = 8: the last block ends exactly at K
        assert index.shape == (-(-n // 4), 4)
        assert buf.tobytes() == _reference(keys, counts, first, 4)[0]
        k, c, f = decode_blocks(buf, index, W)
        assert k.shape == (n, W) and np.array_equal(k, keys) and np.array_equal(c, counts)
        assert np.array_equal(f, first)


def test_encoder_refuses_unsorted_keys_and_bad_counts():
    keys = _to_words([1, 5, 5, 9], 2)
    with pytest.raises(ValueError, match="strictly increasing at record 2"):
        encode_blocks(keys, np.ones(4, np.int64), np.zeros(4, np.uint64), 2)  # across a block boundary
    keys = _to_words([1, 5, 4, 9], 2)
    with pytest.raises(ValueError, match="strictly increasing at record 2"):
        encode_blocks(keys, np.ones(4, np.int64), np.zeros(4, np.uint64), 64)
    with pytest.raises(ValueError, match="outside"):
        encode_blocks(_to_words([1, 2], 1), np.array([1, 0], np.int64), np.zeros(2, np.uint64), 64)
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_block_reference(_to_words([2, 2], 1), np.ones(2, np.int64), np.zeros(2, np.uint64))


def _ref_decode_all(data, index, W):
    out, pos = [], 0
    for n, lk, lc, lf in index:
        if pos + lk + lc + lf > len(data):
            raise CodecError("blocks run past the end of the data")
        secs = (data[pos:pos + lk], data[pos + lk:pos + lk + lc], data[pos + lk + lc:pos + lk + lc + lf])
        out.append(decode_block_reference(secs, int(n), W))
        pos += lk + lc + lf
    return tuple(np.concatenate([o[j] for o in out]) for j in range(3))


def test_corrupt_blocks_are_refused_like_the_reference():
    """Every single-byte change: the kernel refuses exactly when the reference does, else decodes the same."""
    rng = np.random.default_rng(5)
    W = 2
    vals = sorted(set(int(v) for v in rng.integers(0, 2**62, 40)) | {2**127 + 5})
    keys = _to_words(vals, W)
    n = keys.shape[0]
    counts = rng.integers(1, 300, n).astype(np.int64)
    first = rng.integers(0, 2**40, n).astype(np.uint64)
    buf, index = encode_blocks(keys, counts, first, 16)
    data = buf.tobytes()
    refused = 0
    for i in range(len(data)):
        for v in (data[i] ^ 0x01, data[i] ^ 0x80, 0x00, 0xFF):
            if v == data[i]:
                continue
            bad = data[:i] + bytes([v]) + data[i + 1:]
            try:
                want = _ref_decode_all(bad, index, W)
            except CodecError:
                with pytest.raises(CodecError):
                    decode_blocks(np.frombuffer(bad, np.uint8), index, W)
                refused += 1
                continue
            got = decode_blocks(np.frombuffer(bad, np.uint8), index, W)
            assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert refused > len(data)  # most changes break a length or a varint


def test_truncated_data_and_wrong_index_are_refused():
    keys = _to_words(list(range(0, 3000, 7)), 1)
    n = keys.shape[0]
    buf, index = encode_blocks(keys, np.ones(n, np.int64), np.arange(n, dtype=np.uint64), 100)
    with pytest.raises(CodecError, match="past the end"):
        decode_blocks(buf[:-1], index, 1)
    for col in (1, 2, 3):
        for delta in (-1, 1):
            bad = index.copy()
            bad[1, col] += delta
            bad[2, col] -= delta  # same total: the sections no longer line up
            with pytest.raises(CodecError):
                decode_blocks(buf, bad, 1)
    bad = index.copy()
    bad[0, 0] += 1  # one record more than encoded
    with pytest.raises(CodecError):
        decode_blocks(buf, bad, 1)
    with pytest.raises(CodecError, match="key words"):
        decode_blocks(buf, index, 0)
    bad = index.copy()
    bad[0, 1] = -5
    with pytest.raises(CodecError, match="negative"):
        decode_blocks(buf, bad, 1)
