#!/usr/bin/env python3
"""Load a student that minnow wrote (save_safetensors) into PyTorch and compare logits with the fixture.

The file is parsed with the standard library only (struct + json, per the safetensors specification),
so this checks minnow's output without the safetensors package. The weights must be PyTorch's seed-0
student, passed through minnow, e.g. (from the repository root, after building the release preset):

    build/release/tests/export_student_safetensors /tmp/student_minnow.safetensors \\
        tests/fixtures/student_torch.safetensors
    /usr/bin/python3 scripts/check_torch_interop.py /tmp/student_minnow.safetensors

Prints the largest |torch logits from minnow's file - fixture logits| and exits 1 above --tolerance.
"""

import argparse
import json
import os
import struct
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
from torch_student import Student  # noqa: E402  (the architecture, defined once)

DTYPES = {"F32": ("f", 4, torch.float32), "F64": ("d", 8, torch.float64)}


def read_safetensors(path):
    """{name: tensor} in file order, and the metadata; F32 and F64 only (what minnow writes)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    if not 2 <= n <= len(data) - 8 or data[8:9] != b"{":
        raise ValueError("%s: bad header" % path)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    start = 8 + n
    tensors = {}
    for name, entry in header.items():
        code, size, dtype = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        count = (end - begin) // size
        values = struct.unpack("<%d%s" % (count, code), data[start + begin:start + end])
        tensors[name] = torch.tensor(values, dtype=dtype).reshape(entry["shape"])
    return tensors, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a student written by minnow")
    parser.add_argument("--fixture", default=os.path.join(ROOT, "tests", "fixtures", "student_torch_logits.json"))
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()

    tensors, metadata = read_safetensors(args.file)
    model = Student().eval()
    model.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=True)
    with open(args.fixture) as f:
        fixture = json.load(f)
    x = torch.tensor(fixture["inputs"]["data"], dtype=torch.float32).reshape(fixture["inputs"]["shape"])
    expected = torch.tensor(fixture["logits"]["data"], dtype=torch.float64).reshape(fixture["logits"]["shape"])
    with torch.no_grad():
        logits = model(x).double()
    diff = (logits - expected).abs().max().item()
    print("%s: %d tensors, metadata %r; max |logits - fixture| = %.3g (torch %s)"
          % (args.file, len(tensors), metadata, diff, torch.__version__))
    sys.exit(0 if diff <= args.tolerance else 1)


if __name__ == "__main__":
    main()
