#!/usr/bin/env python3
"""Check a safetensors file against the format's specification and an expected list of tensors.

Python standard library only, so it reads minnow's output the way a reader that is not minnow would.

    check_safetensors.py FILE [--dtype F32] NAME=D0,D1,... [NAME=...]

Checks: the u64 little-endian header length, the JSON header (an object starting with '{', no
duplicate keys, padded with spaces only, data starting at a multiple of 8 as the reference
implementation writes it), "__metadata__" as strings, every entry having exactly dtype/shape/
data_offsets, the names, their order and shapes as given (a shape "" is a scalar), the dtype,
each range's byte count against dtype and shape, and the ranges covering the data buffer exactly.
Exits 1 with a message naming the first problem.
"""

import json
import struct
import sys

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1,
               "BOOL": 1, "I16": 2, "U16": 2, "U32": 4, "U64": 8}


def fail(message):
    print("check_safetensors: " + message, file=sys.stderr)
    sys.exit(1)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    for k in keys:
        if keys.count(k) > 1:
            fail("key %r appears more than once in the header" % k)
    return dict(pairs)


def parse_expected(args):
    dtype = None
    expected = []
    i = 0
    while i < len(args):
        if args[i] == "--dtype":
            dtype = args[i + 1]
            i += 2
            continue
        name, _, dims = args[i].partition("=")
        expected.append((name, [int(d) for d in dims.split(",") if d]))
        i += 1
    return dtype, expected


def check(path, dtype, expected):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail("%s: %d bytes, too short" % (path, len(data)))
    (n,) = struct.unpack("<Q", data[:8])
    if n < 2 or n > 100_000_000 or n > len(data) - 8:
        fail("%s: bad header length %d (file of %d bytes)" % (path, n, len(data)))
    raw = data[8:8 + n]
    if raw[:1] != b"{":
        fail("%s: the header does not start with '{'" % path)
    text = raw.decode("utf-8")
    stripped = text.rstrip(" ")
    if stripped.rstrip() != stripped:
        fail("%s: the header is padded with something other than spaces" % path)
    if (8 + n) % 8 != 0:
        fail("%s: the data starts at %d, not at a multiple of 8" % (path, 8 + n))
    header = json.loads(stripped, object_pairs_hook=no_duplicates)
    if not isinstance(header, dict):
        fail("%s: the header is not an object" % path)
    # object_pairs_hook built dicts, which keep the file's order
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        fail("%s: __metadata__ is not an object of strings" % path)

    buffer = len(data) - 8 - n
    ranges = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or sorted(entry) != ["data_offsets", "dtype", "shape"]:
            fail("%s: entry %r does not have exactly dtype, shape and data_offsets" % (path, name))
        if entry["dtype"] not in DTYPE_SIZES:
            fail("%s: %r has unknown dtype %r" % (path, name, entry["dtype"]))
        if dtype is not None and entry["dtype"] != dtype:
            fail("%s: %r is %s, expected %s" % (path, name, entry["dtype"], dtype))
        shape = entry["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            fail("%s: %r has a bad shape %r" % (path, name, shape))
        offsets = entry["data_offsets"]
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
            fail("%s: %r has bad data_offsets %r" % (path, name, offsets))
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if begin > end or end > buffer or end - begin != count * DTYPE_SIZES[entry["dtype"]]:
            fail("%s: %r [%d, %d] does not hold %s %r (buffer of %d bytes)" % (path, name, begin, end, entry["dtype"], shape, buffer))
        ranges.append((begin, end, name))

    covered = 0
    for begin, end, name in sorted(ranges):
        if begin != covered:
            fail("%s: %r starts at %d, the previous tensor ends at %d (gap or overlap)" % (path, name, begin, covered))
        covered = end
    if covered != buffer:
        fail("%s: the tensors end at %d, the data buffer at %d" % (path, covered, buffer))

    found = [(name, entry["shape"]) for name, entry in header.items()]
    if found != expected:
        fail("%s: tensors %r, expected %r" % (path, found, expected))
    print("%s: %d tensors, %d data bytes, metadata %r: ok" % (path, len(found), buffer, metadata))


def main():
    if len(sys.argv) < 2:
        fail("usage: check_safetensors.py FILE [--dtype DTYPE] NAME=D0,D1,... ...")
    dtype, expected = parse_expected(sys.argv[2:])
    check(sys.argv[1], dtype, expected)


if __name__ == "__main__":
    main()
