#!/usr/bin/python3
"""Side-by-side timing of minnow's compression kernels and PyTorch 1.13's equivalents, in one run.

For every row it runs the minnow benchmark (a Google Benchmark binary, median of repetitions) and then
times the same operation in PyTorch in this process (median of blocks), and prints a Markdown table with
the ratio PyTorch time / minnow time (> 1 means minnow is faster).

PyTorch runs with the environment compare_torch.py documents (OpenBLAS variables unset, large mmap
threshold); the minnow binaries run with the caller's original environment.

  /usr/bin/python3 benchmarks/compare_torch_kernels.py [--threads 2] [--only prune,quant,distill]
      [--build build/release/benchmarks] [--quick]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare_torch  # noqa: E402  (environment handling and machine description are shared)

GIB = 1 << 30


def minnow_median(binary, name, quick, env):
    """Median real time of one benchmark in seconds, or None when the binary or benchmark is missing."""
    if not os.access(binary, os.X_OK):
        return None
    cmd = [binary, "--benchmark_format=json", "--benchmark_repetitions=%d" % (3 if quick else 5),
           "--benchmark_report_aggregates_only=true", "--benchmark_filter=^%s(/|$)" % name.replace("+", "\\+")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return None
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    for row in json.loads(proc.stdout)["benchmarks"]:
        if row.get("aggregate_name") == "median":
            return float(row["real_time"]) * scale[row.get("time_unit", "ns")]
    return None


def torch_median(fn, quick, min_block_s=0.2):
    """Median seconds per call over blocks of calls lasting at least min_block_s each."""
    fn()  # warm-up: allocations, lazy initialisation
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    per_block = max(1, int(min_block_s / once))
    samples = []
    for _ in range(3 if quick else 7):
        start = time.perf_counter()
        for _ in range(per_block):
            fn()
        samples.append((time.perf_counter() - start) / per_block)
    return statistics.median(samples)


def prune_rows(torch, threads):
    import torch.nn.utils.prune as prune
    fc1 = torch.nn.Linear(6272, 1000)
    teacher = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3, padding=1), torch.nn.Conv2d(64, 128, 3, padding=1),
                                  torch.nn.Linear(6272, 1000), torch.nn.Linear(1000, 10))

    def l1():
        prune.l1_unstructured(fc1, "weight", amount=0.9)
        prune.remove(fc1, "weight")  # the next call starts from an unpruned module again

    def global_all():
        targets = [(m, n) for m in teacher for n in ("weight", "bias")]
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=0.9)
        for m, n in targets:
            prune.remove(m, n)

    t = "threads:%d" % threads
    return [
        ("prune `l1_unstructured` fc1 (6.27 M), amount 0.9", l1, "bench_prune", ["l1_unstructured/fc1/" + t]),
        ("prune `global_unstructured` all teacher parameters, 0.9", global_all, "bench_prune",
         ["global_unstructured/teacher/" + t]),
    ]


def quant_rows(torch, threads):
    # The shapes of bench_quant.cpp: 16 M floats, per channel as [256, 65536] along axis 0.
    n = 16 << 20
    x = torch.randn(n)
    dy = torch.randn(n)
    channels = 256
    xc = x.view(channels, -1)
    scales = torch.rand(channels) * 0.02 + 0.01
    zero_points = torch.zeros(channels, dtype=torch.int32)
    xg = x.clone().requires_grad_(True)
    xcg = xc.clone().requires_grad_(True)
    observer = torch.ao.quantization.MinMaxObserver()
    pc_observer = torch.ao.quantization.PerChannelMinMaxObserver(ch_axis=0)

    def per_tensor():
        torch.fake_quantize_per_tensor_affine(x, 0.02, 3, -128, 127)

    def per_channel():
        torch.fake_quantize_per_channel_affine(xc, scales, zero_points, 0, -128, 127)

    def per_tensor_backward():
        xg.grad = None
        torch.fake_quantize_per_tensor_affine(xg, 0.02, 3, -128, 127).backward(dy)

    def per_channel_backward():
        xcg.grad = None
        torch.fake_quantize_per_channel_affine(xcg, scales, zero_points, 0, -128, 127).backward(dy.view(channels, -1))

    t = "/threads:%d" % threads
    return [
        ("fake-quant forward per tensor, 16 M floats", per_tensor, "bench_quant", ["fake_quant/tensor" + t]),
        ("fake-quant forward per channel [256, 65536]", per_channel, "bench_quant", ["fake_quant/channel" + t]),
        ("fake-quant forward + STE backward per tensor", per_tensor_backward, "bench_quant",
         ["fake_quant/tensor" + t, "ste_backward/tensor" + t]),
        ("fake-quant forward + STE backward per channel", per_channel_backward, "bench_quant",
         ["fake_quant/channel" + t, "ste_backward/channel" + t]),
        ("MinMax observer, 16 M floats", lambda: observer(x), "bench_quant", ["observe/minmax" + t]),
        ("per-channel MinMax observer [256, 65536]", lambda: pc_observer(xc), "bench_quant", ["observe/per_channel" + t]),
    ]


def distill_rows(torch, threads):
    F = torch.nn.functional

    def kd(rows, cols, temperature=4.0):
        s = torch.randn(rows, cols, requires_grad=True)
        teacher = torch.randn(rows, cols)

        def step():
            s.grad = None
            loss = F.kl_div(F.log_softmax(s / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                            reduction="batchmean") * temperature * temperature
            loss.backward()
        return step

    return [
        ("KD loss + gradient [4096, 1000]", kd(4096, 1000), "bench_distill", ["kd_loss/4096x1000/threads:%d" % threads]),
        ("KD loss + gradient [256, 10] (minnow 1 thread)", kd(256, 10), "bench_distill", ["kd_loss/256x10/threads:1"]),
    ]


def fmt_time(seconds):
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return "%.3g %s" % (seconds / scale, unit)
    return "%.3g ns" % (seconds / 1e-9)


def main():
    minnow_env = compare_torch.reexec_if_needed(__file__)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="prune,quant,distill")
    parser.add_argument("--build", default="build/release/benchmarks", help="directory of minnow's benchmarks")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    groups = {"prune": prune_rows, "quant": quant_rows, "distill": distill_rows}
    rows = []
    for group in args.only.split(","):
        if group not in groups:
            parser.error("unknown group %r (choose from %s)" % (group, ", ".join(groups)))
        rows += groups[group](torch, args.threads)

    model, nproc = compare_torch.machine_description()
    load_start = compare_torch.load_average()
    print("| operation | PyTorch %s | minnow | PyTorch / minnow |" % torch.__version__)
    print("| --- | ---: | ---: | ---: |")
    for label, fn, binary, names in rows:
        # A row timed as several minnow benchmarks (forward, then backward) adds their medians.
        parts = [minnow_median(os.path.join(args.build, binary), name, args.quick, minnow_env) for name in names]
        ours = None if None in parts else sum(parts)
        theirs = torch_median(fn, args.quick)
        ratio = "%.1f×" % (theirs / ours) if ours else "—"
        print("| %s | %s | %s | %s |" % (label, fmt_time(theirs), fmt_time(ours), ratio), flush=True)
    print()
    print("%s, nproc %d, %d threads on both sides; load average %s at start, %s at end." % (
        model, nproc, args.threads, load_start, compare_torch.load_average()))


if __name__ == "__main__":
    main()
