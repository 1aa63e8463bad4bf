#!/usr/bin/env python3
"""Train minnow's student CNN in PyTorch on Fashion-MNIST and save it as safetensors for minnow.

The model a user brings: trained in PyTorch, handed to minnow to prune, quantize and write as a .minnow
file (docs/tutorial.md):

    /usr/bin/python3 examples/torch_student.py --epochs 15 --out my_student.safetensors
    build/release/examples/compress --model-file my_student.safetensors --arch student --out my-out

The file is written with the standard library only (`struct` and `json`), as the safetensors
specification describes it, so no package beyond torch is needed. The parameter names and layouts are
PyTorch's state_dict ones (conv1.weight [16, 1, 3, 3], ..., fc2.bias [10]), which is what minnow's
load_safetensors expects for the architecture "student".
"""

import argparse
import gzip
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Pixels are scaled to [0, 1], then standardised with the training set's mean and deviation, as minnow does.
MEAN, STD = 0.2860, 0.3530


class Student(nn.Module):
    """minnow's "student": conv 1->16, conv 16->32 (3x3, same padding, each ReLU + 2x2 max pool), fc 1568->64->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(1568, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def write_safetensors(path, tensors, metadata):
    """The format by hand: u64 little-endian header length, the JSON header padded with spaces to a
    multiple of 8, then every tensor's float32 little-endian bytes back to back, in the order given."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        assert t.dtype == torch.float32, (name, t.dtype)
        values = t.flatten().tolist()
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_idx(path):
    """An IDX file (raw or .gz) as a uint8 array: images [N, 28, 28] or labels [N]."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 0x00000803:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, count * rows * cols, 16).reshape(count, rows, cols)
    if magic == 0x00000801:
        return np.frombuffer(data, np.uint8, count, 8)
    raise ValueError("%s: not an IDX ubyte file (magic %08x)" % (path, magic))


def load_split(directory, prefix):
    images = read_idx(os.path.join(directory, prefix + "-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(directory, prefix + "-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(images.astype(np.float32)) / 255.0 - MEAN) / STD
    return x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate, cosine-annealed per epoch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", default=os.environ.get("MINNOW_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="student.safetensors")
    args = parser.parse_args()
    if args.epochs <= 0:
        parser.error("--epochs must be positive, got %d" % args.epochs)

    torch.manual_seed(args.seed)
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    model = Student()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:
            group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * epoch / args.epochs))
        model.train()
        order = torch.randperm(len(train_x))
        total = 0.0
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print("epoch %d: train loss %.4f" % (epoch + 1, total / len(order)), flush=True)
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(test_x[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum()) for i in range(0, len(test_x), 1000))
    write_safetensors(args.out, model.state_dict(), {"format": "pt", "producer": "examples/torch_student.py"})
    print("test accuracy %.2f %%; wrote %s (%d bytes)" % (100.0 * correct / len(test_x), args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
