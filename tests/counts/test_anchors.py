"""Anchor formats: C++ reversed strings, Python MSB-first strings, 'count string' files (exact both ways)."""
from __future__ import annotations

import numpy as np
import pytest

import fastpoly
from fastpoly.counts.anchors import (
    convert_string,
    counts_from_anchor_file,
    keys_to_strings,
    read_count_strings,
    strings_to_keys,
    write_count_strings,
)
from fastpoly.keys import bits_to_key, key_to_bits


def test_hand_built_three_input_example():
    # f = x_0 AND NOT x_2 on 3 inputs; fastpoly row i has x_j = (i >> j) & 1
    rows = "".join("1" if (i & 1) and not (i >> 2) & 1 else "0" for i in range(8))
    assert rows == "01010000"
    # C++ anchor: same inputs, printed reversed
    assert convert_string(rows, "rows", "cpp") == "00001010"
    # Python anchors: character i = input format(i, '03b') = (x_0, x_1, x_2) MSB first
    py = "".join("1" if format(i, "03b")[0] == "1" and format(i, "03b")[2] == "0" else "0" for i in range(8))
    assert convert_string(rows, "rows", "python") == py
    assert py == "00001010"
    # f = x_0 AND NOT x_1: rows 1 and 5; C++ reversed; Python inputs '100' and '101'
    g = "01000100"
    assert convert_string(g, "rows", "cpp") == "00100010"
    assert convert_string(g, "rows", "python") == "00001100"
    assert convert_string("00001100", "python", "cpp") == "00100010"
    for a in ("rows", "cpp", "python"):
        for b in ("rows", "cpp", "python"):
            s = convert_string(rows, "rows", a)
            assert convert_string(convert_string(s, a, b), b, a) == s


def test_single_input_functions_seven_bits():
    # f = x_0 on 7 inputs: rows string alternates; C++ string is the reversal; Python string has
    # x_0 as the most significant bit of the input index: 64 zeros then 64 ones
    rows = "01" * 64
    assert convert_string(rows, "rows", "cpp") == "10" * 64
    assert convert_string(rows, "rows", "python") == "0" * 64 + "1" * 64
    # f = x_6: rows string is 64 zeros then 64 ones, Python string alternates
    rows6 = "0" * 64 + "1" * 64
    assert convert_string(rows6, "rows", "python") == "01" * 64
    # a single 1 at row 1 (x_0 = 1, others 0) is Python input 64 = '1000000'
    r = ["0"] * 128
    r[1] = "1"
    py = convert_string("".join(r), "rows", "python")
    assert py.index("1") == 64


def test_keys_strings_round_trip_random():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64, size=(300, 2), dtype=np.uint64)
    for conv in ("rows", "cpp", "python"):
        s = keys_to_strings(keys, 128, conv)
        np.testing.assert_array_equal(strings_to_keys(s, conv), keys)
    assert keys_to_strings(keys[:3], 128, "rows") == [key_to_bits(k, 128) for k in keys[:3]]
    assert keys_to_strings(keys[:3], 128, "cpp") == [key_to_bits(k, 128)[::-1] for k in keys[:3]]


def test_count_string_file_round_trip_exact(tmp_path):
    # a hand-written file as 'sort | uniq -c' prints it (sorted by string, "%7d %s")
    text = (
        "      3 00000000\n"
        "     12 00001010\n"
        "1234567 11110000\n"
        "      1 11111111\n"
    )
    p = tmp_path / "anchor.txt"
    p.write_text(text)
    keys, counts, n = read_count_strings(p, "cpp")
    assert n == 8
    got = dict(zip(keys_to_strings(keys, 8, "cpp"), counts.tolist()))
    assert got == {"00000000": 3, "00001010": 12, "11110000": 1234567, "11111111": 1}
    # C++ "00001010" is fastpoly rows "01010000"
    assert counts[np.flatnonzero(np.all(keys == bits_to_key("01010000", 8), axis=1))[0]] == 12
    out = tmp_path / "again.txt"
    write_count_strings((keys, counts), out, "cpp", n_bits=8)
    assert out.read_text() == text
    # repeated strings are summed; bad lines are refused with the line number
    (tmp_path / "dup.txt").write_text("  2 0101\n  3 0101\n")
    k, c, _ = read_count_strings(tmp_path / "dup.txt", "rows")
    assert c.tolist() == [5]
    (tmp_path / "bad.txt").write_text("  2 0101\n  x 0101\n")
    with pytest.raises(ValueError, match=":2:"):
        read_count_strings(tmp_path / "bad.txt", "rows")
    (tmp_path / "bad2.txt").write_text("  2 0121\n")
    with pytest.raises(ValueError, match="0 and 1"):
        read_count_strings(tmp_path / "bad2.txt", "rows")
    with pytest.raises(ValueError, match="convention"):
        convert_string("0101", "rows", "fortran")


def test_counts_export_import_and_cli(tmp_path):
    arch = fastpoly.MLP(3, (4,))
    c = fastpoly.sample(arch, n_samples=1000, seed=4, backend="numpy", progress=False)
    for conv in ("cpp", "python", "rows"):
        p = tmp_path / f"{conv}.txt"
        write_count_strings(c, p, conv)
        back = counts_from_anchor_file(p, arch, conv)
        np.testing.assert_array_equal(back.keys, c.keys)
        np.testing.assert_array_equal(back.counts, c.counts)
        assert back.n_samples == 1000 and back.meta["seed"] is None
        # merges with fastpoly results of the same architecture (a separate stream)
        merged = back.merge(c)
        assert merged.n_samples == 2000
    from fastpoly.cli.main import main

    assert main(["anchors", "export", _save(c, tmp_path), "--convention", "cpp", "--out", str(tmp_path / "e.txt")]) == 0
    assert (tmp_path / "e.txt").read_text() == (tmp_path / "cpp.txt").read_text()
    assert main(["anchors", "import", str(tmp_path / "e.txt"), "--arch", "3-4-1", "--out", str(tmp_path / "i.npz")]) == 0
    imp = fastpoly.FunctionCounts.load(tmp_path / "i.npz")
    np.testing.assert_array_equal(imp.counts, c.counts)
    with pytest.raises(ValueError, match="Boolean inputs"):
        counts_from_anchor_file(tmp_path / "e.txt", "4-4-1", "cpp")


def _save(c, tmp_path):
    p = tmp_path / "c.npz"
    c.save(p)
    return str(p)
