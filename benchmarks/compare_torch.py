#!/usr/bin/python3
"""Side-by-side benchmark of minnow against PyTorch on the same two Fashion-MNIST CNNs.

Runs minnow's Google Benchmark binary (bench_cnn) first, then times the same networks in PyTorch in
this process, and prints a Markdown table of the medians with the ratio minnow/PyTorch for throughput
and PyTorch/minnow for latency, so that a ratio > 1 always means minnow is faster.

PyTorch is timed in its strongest configuration on this machine:
  * fc1 both as nn.Linear (after Flatten) and as the equivalent 7x7 Conv2d on the [B,C,7,7] map;
    both variants are timed (interleaved) for every measurement and the faster one is reported;
  * OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset and
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296.
    These must hold when the process starts, so the script re-executes itself with them; the minnow
    binary is run with the caller's original environment (passed through MINNOW_COMPARE_ORIGINAL_ENV);
  * torch.set_num_threads(T) and, because torch does not forward it to OpenBLAS, the OpenBLAS thread
    count set to T as well (--openblas-threads overrides it); set_num_interop_threads(1).

Section `int8-linear` (run alone with `--only int8-linear`): the teacher's fc1 (x [B × 6272] by
W [1000 × 6272], per-output-channel int8 weights, bias) as an integer Linear in both libraries, from
minnow's bench_infer binary (--minnow-infer) and PyTorch's quantized engine (oneDNN when the build has
it, else fbgemm, x86 or qnnpack; the table says which):
  * quantized: quint8 input already quantized, quint8 output (torch.ao.nn.quantized.Linear on a quantized
    tensor; minnow infer/int8_u8_in_u8_out);
  * end to end: fp32 in, fp32 out (torch.quantize_per_tensor → quantized.Linear → dequantize; minnow
    QuantizedLinear, infer/int8_f32_in_f32_out);
  * dynamic: fp32 in, fp32 out with the input range measured per call
    (torch.ao.nn.quantized.dynamic.Linear; minnow MinMax → Affine → quantize → qgemm, infer/int8_dynamic_f32);
  * fp32: nn.Linear (OpenBLAS) against minnow's nn::Linear (infer/fp32_minnow_linear), for scale.

Must be run with Debian's interpreter (torch 1.13 is packaged for it):
  /usr/bin/python3 benchmarks/compare_torch.py [--only cnn|int8-linear] [--arch teacher|student|all]
      [--threads 1,2] [--quick] [--json OUT] [--minnow build/release/benchmarks/bench_cnn]
      [--minnow-infer build/release/benchmarks/bench_infer] [--openblas-threads N|match]
"""
import argparse
import ctypes
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ORIGINAL_ENV_VAR = "MINNOW_COMPARE_ORIGINAL_ENV"
REQUIRED_UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REQUIRED_SET = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296",
}
DEBIAN_PYTHON = "/usr/bin/python3"
DEFAULT_MINNOW = "build/release/benchmarks/bench_cnn"
ARCHS = ("teacher", "student")
# (conv1 channels, conv2 channels, hidden units) of each network.
ARCH_SHAPES = {"teacher": (64, 128, 1000), "student": (16, 32, 64)}
TRAIN_BATCHES = (64, 256)
INFER_BATCH = 256
SECTIONS = ("cnn", "int8-linear")
# fc1 of the teacher: in features, out features; the batches of the int8-linear section.
FC1_SHAPE = (6272, 1000)
LINEAR_BATCHES = (256, 1)
# (case, minnow benchmark, description) of the int8-linear section.
LINEAR_CASES = (
    ("quantized", "int8_u8_in_u8_out", "int8 Linear, quint8 in → quint8 out"),
    ("end_to_end", "int8_f32_in_f32_out", "int8 Linear end to end, fp32 in → fp32 out"),
    ("dynamic", "int8_dynamic_f32", "dynamic int8 Linear, fp32 in → fp32 out"),
    ("fp32", "fp32_minnow_linear", "fp32 Linear"),
)
# The parameters bench_infer uses: input uint8 (scale 4/255, zero point 0), weights per channel
# (scale 0.1/127, zero point 0), output uint8 (scale 0.05, zero point 128).
LINEAR_INPUT_SCALE = 4.0 / 255.0
LINEAR_WEIGHT_SCALE = 0.1 / 127.0
LINEAR_OUTPUT = (0.05, 128)


# ----------------------------------------------------------------------------------------------------
# Environment: re-exec with the PyTorch environment, keep the original one for minnow.


def environment_is_ready():
    return all(v not in os.environ for v in REQUIRED_UNSET) and all(
        os.environ.get(k) == v for k, v in REQUIRED_SET.items())


def reexec_if_needed(script=__file__):
    """Returns the environment the minnow binary must be run with; re-executes `script` when needed."""
    if ORIGINAL_ENV_VAR in os.environ:
        original = json.loads(os.environ.pop(ORIGINAL_ENV_VAR))
        if not environment_is_ready():
            sys.exit("compare_torch.py: re-exec did not produce the required environment")
        return original
    interpreter = sys.executable
    if importlib.util.find_spec("torch") is None:
        if os.path.exists(DEBIAN_PYTHON) and os.path.realpath(interpreter) != os.path.realpath(DEBIAN_PYTHON):
            interpreter = DEBIAN_PYTHON
        else:
            sys.exit("compare_torch.py: torch is not importable; run with " + DEBIAN_PYTHON)
    if environment_is_ready() and interpreter == sys.executable:
        return dict(os.environ)
    env = dict(os.environ)
    env[ORIGINAL_ENV_VAR] = json.dumps(dict(os.environ))
    for name in REQUIRED_UNSET:
        env.pop(name, None)
    env.update(REQUIRED_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(interpreter, [interpreter, os.path.abspath(script), *sys.argv[1:]], env)


# ----------------------------------------------------------------------------------------------------
# Machine and BLAS description.


def machine_description():
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
                break
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        nproc = len(os.sched_getaffinity(0))
    return model, nproc


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def loaded_libraries(keywords):
    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and any(k in os.path.basename(fields[-1]).lower() for k in keywords):
                    paths.add(fields[-1])
    except OSError:
        pass
    return sorted(paths)


class Blas:
    """Which BLAS torch ended up calling, and a handle to OpenBLAS's thread control if that is it."""

    def __init__(self, torch):
        a = torch.ones(64, 64)
        (a @ a).sum().item()  # makes sure the BLAS library is loaded
        build = torch.__config__.show()
        info = [tok.strip().rstrip(",") for tok in build.replace(",", " ").split() if tok.startswith("BLAS_INFO=")]
        self.torch_info = info[0] if info else "BLAS_INFO=?"
        self.libs = loaded_libraries(("blas", "mkl_rt", "libmkl"))
        self.openblas = None
        self.summary = "unknown BLAS"
        for path in self.libs:
            if "openblas" in os.path.basename(path):
                try:
                    lib = ctypes.CDLL(path)
                    lib.openblas_get_config.restype = ctypes.c_char_p
                    lib.openblas_get_corename.restype = ctypes.c_char_p
                    self.openblas = lib
                    self.summary = "%s, core %s" % (lib.openblas_get_config().decode(),
                                                   lib.openblas_get_corename().decode())
                except (OSError, AttributeError):
                    self.summary = os.path.basename(path)
                break
        else:
            if self.libs:
                self.summary = ", ".join(os.path.basename(p) for p in self.libs)
        try:
            import threadpoolctl  # optional
            pools = threadpoolctl.threadpool_info()
            blas_pools = [p for p in pools if p.get("user_api") == "blas"]
            if blas_pools and self.openblas is None:
                self.summary = "; ".join("%s %s (%s)" % (p.get("internal_api"), p.get("version"),
                                                          p.get("architecture")) for p in blas_pools)
        except ImportError:
            pass

    def set_threads(self, n):
        if self.openblas is not None:
            self.openblas.openblas_set_num_threads(int(n))

    def threads(self):
        return self.openblas.openblas_get_num_threads() if self.openblas is not None else None

    def describe(self):
        where = ", ".join(self.libs) if self.libs else "no BLAS library found in /proc/self/maps"
        return "%s [torch %s; loaded: %s]" % (self.summary, self.torch_info, where)


# ----------------------------------------------------------------------------------------------------
# minnow side.


def benchmark_key(kind, arch, batch, threads):
    return "%s/%s/batch:%d/threads:%d" % (kind, arch, batch, threads)


def wanted_keys(archs, threads):
    keys = []
    for arch in archs:
        for t in threads:
            keys += [benchmark_key("train", arch, b, t) for b in TRAIN_BATCHES]
            keys.append(benchmark_key("infer", arch, INFER_BATCH, t))
            keys.append(benchmark_key("latency", arch, 1, t))
    return keys


NAME_RE = re.compile(r"(train|infer|latency)/(teacher|student)/batch:[0-9]+/threads:[0-9]+")
TIME_UNIT_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def run_minnow(binary, archs, threads, quick, env):
    """Returns ({key: value}, error message or None); throughput in images/s, latency in µs."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return {}, ("minnow benchmark binary not found: build it with "
                    "`cmake --build --preset release --target bench_cnn`")
    # No trailing anchor: Google Benchmark appends suffixes such as "/real_time" to the names.
    regex = "^(train|infer|latency)/(%s)/batch:[0-9]+/threads:(%s)(/|$)" % (
        "|".join(archs), "|".join(str(t) for t in threads))
    cmd = [binary, "--benchmark_format=json",
           "--benchmark_repetitions=%d" % (3 if quick else 7),
           "--benchmark_report_aggregates_only=true",
           "--benchmark_filter=" + regex]
    if quick:
        cmd.append("--benchmark_min_time=0.05")
    print("running: " + " ".join(cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return {}, "minnow benchmark binary failed with exit code %d" % proc.returncode
    try:
        rows = json.loads(proc.stdout)["benchmarks"]
    except (ValueError, KeyError) as e:
        sys.stderr.write(proc.stderr)
        return {}, "could not parse minnow's JSON output (%s); stderr: %s" % (e, proc.stderr.strip()[:200])
    results = {}
    for row in rows:
        if row.get("aggregate_name") != "median":
            continue
        match = NAME_RE.match(row.get("run_name", row.get("name", "")))
        if not match:
            continue
        name = match.group(0)  # without suffixes such as "/real_time"
        if name.startswith("latency/"):
            results[name] = float(row["real_time"]) * TIME_UNIT_TO_US[row.get("time_unit", "ns")]
        elif "items_per_second" in row:
            results[name] = float(row["items_per_second"])
    print("minnow run took %.0f s" % elapsed, file=sys.stderr, flush=True)
    return results, None


# ----------------------------------------------------------------------------------------------------
# PyTorch side.


def make_models(torch, arch):
    """Returns {variant: model} for the fc1 variants, with identical weights."""
    nn = torch.nn
    c1, c2, hidden = ARCH_SHAPES[arch]

    def features():
        return [nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

    torch.manual_seed(0)
    linear = nn.Sequential(*features(), nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
                           nn.Linear(hidden, 10))
    conv7 = nn.Sequential(*features(), nn.Conv2d(c2, hidden, 7), nn.ReLU(), nn.Flatten(),
                          nn.Linear(hidden, 10))
    with torch.no_grad():
        for i in (0, 3, 9):
            conv7[i].weight.copy_(linear[i].weight)
            conv7[i].bias.copy_(linear[i].bias)
        conv7[6].weight.copy_(linear[7].weight.reshape(hidden, c2, 7, 7))
        conv7[6].bias.copy_(linear[7].bias)
    return {"linear": linear, "conv7": conv7}


class Workload:
    """One measurement for one fc1 variant: a callable running one iteration on fixed data."""

    def __init__(self, torch, model, kind, batch):
        self.torch = torch
        self.model = model
        self.kind = kind
        self.batch = batch
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.rand(batch, 1, 28, 28, generator=gen)
        self.y = torch.randint(0, 10, (batch,), generator=gen)
        self.loss = None
        if kind == "train":
            model.train()
            self.opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        else:
            model.eval()

    def run(self, iterations):
        torch = self.torch
        if self.kind == "train":
            model, opt, x, y = self.model, self.opt, self.x, self.y
            F = torch.nn.functional
            for _ in range(iterations):
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=False)
            self.loss = loss
        else:
            model, x = self.model, self.x
            with torch.inference_mode():
                for _ in range(iterations):
                    model(x)

    def timed(self, iterations):
        start = time.perf_counter()
        self.run(iterations)
        return (time.perf_counter() - start) / iterations


def time_variants(workloads, reps, block_s, warmup_s):
    """Times each workload in `reps` interleaved blocks of about block_s seconds each.

    Returns {variant: median seconds per iteration}."""
    iters = {}
    for name, w in workloads.items():
        # Warm-up (at least 2 iterations and warmup_s), also used to size the timing blocks.
        w.run(1)
        spent, n, per_iter = 0.0, 1, None
        while True:
            per_iter = w.timed(n)
            spent += per_iter * n
            if spent >= warmup_s and n >= 1:
                break
            n = min(n * 2, max(1, int(0.5 * warmup_s / max(per_iter, 1e-9))) + 1)
        iters[name] = max(1, int(round(block_s / per_iter)))
    samples = {name: [] for name in workloads}
    for r in range(reps):
        # Alternate the order so neither variant always runs right after the other.
        order = list(workloads) if r % 2 == 0 else list(reversed(list(workloads)))
        for name in order:
            samples[name].append(workloads[name].timed(iters[name]))
    for name, w in workloads.items():
        if w.loss is not None and not bool(w.torch.isfinite(w.loss)):
            print("warning: %s training loss became non-finite" % name, file=sys.stderr)
    return {name: statistics.median(s) for name, s in samples.items()}


def run_pytorch(torch, blas, archs, threads, quick, openblas_threads):
    reps = 3 if quick else 9
    block_s = 0.05 if quick else 0.2
    warmup_s = 0.05 if quick else 0.3
    results = {}
    for arch in archs:
        for t in threads:
            torch.set_num_threads(t)
            blas.set_threads(t if openblas_threads == "match" else int(openblas_threads))
            cases = [("train", b) for b in TRAIN_BATCHES] + [("infer", INFER_BATCH), ("latency", 1)]
            for kind, batch in cases:
                key = benchmark_key(kind, arch, batch, t)
                start = time.perf_counter()
                models = make_models(torch, arch)
                workloads = {v: Workload(torch, m, "train" if kind == "train" else "infer", batch)
                             for v, m in models.items()}
                sec = time_variants(workloads, reps, block_s, warmup_s)
                if kind == "latency":
                    per_variant = {v: s * 1e6 for v, s in sec.items()}
                    best = min(per_variant, key=per_variant.get)
                    unit = "us"
                else:
                    per_variant = {v: batch / s for v, s in sec.items()}
                    best = max(per_variant, key=per_variant.get)
                    unit = "images/s"
                results[key] = {"value": per_variant[best], "unit": unit, "fc1": best,
                                "per_variant": per_variant}
                print("pytorch %-34s %s  (%.1f s)" % (
                    key, "  ".join("%s=%.4g" % (v, x) for v, x in per_variant.items()),
                    time.perf_counter() - start), file=sys.stderr, flush=True)
    return results


# ----------------------------------------------------------------------------------------------------
# int8-linear section: fc1 as an integer Linear.


def linear_key(case, batch, threads):
    return "linear/%s/batch:%d/threads:%d" % (case, batch, threads)


def linear_keys(threads):
    return [linear_key(case, b, t) for b in LINEAR_BATCHES for t in threads for case, _, _ in LINEAR_CASES]


def linear_gops(batch):
    return 2.0 * batch * FC1_SHAPE[0] * FC1_SHAPE[1] / 1e9


def run_minnow_linear(binary, threads, quick, env):
    """Returns ({linear key: median ms per call}, error message or None)."""
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return {}, ("minnow benchmark binary not found: build it with "
                    "`cmake --build --preset release --target bench_infer`")
    names = {bench: case for case, bench, _ in LINEAR_CASES}
    regex = "^infer/(%s)/(%s)/(%s)(/|$)" % ("|".join(names), "|".join(str(b) for b in LINEAR_BATCHES),
                                             "|".join(str(t) for t in threads))
    cmd = [binary, "--benchmark_format=json",
           "--benchmark_repetitions=%d" % (3 if quick else 7),
           "--benchmark_report_aggregates_only=true",
           "--benchmark_min_time=%s" % ("0.05" if quick else "0.2"),
           "--benchmark_filter=" + regex]
    print("running: " + " ".join(cmd), file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return {}, "minnow bench_infer failed with exit code %d" % proc.returncode
    try:
        rows = json.loads(proc.stdout)["benchmarks"]
    except (ValueError, KeyError) as e:
        return {}, "could not parse bench_infer's JSON output (%s); stderr: %s" % (e, proc.stderr.strip()[:200])
    pattern = re.compile(r"infer/(%s)/([0-9]+)/([0-9]+)" % "|".join(names))
    results = {}
    for row in rows:
        match = pattern.match(row.get("run_name", row.get("name", "")))
        if row.get("aggregate_name") != "median" or not match:
            continue
        ms = float(row["real_time"]) * TIME_UNIT_TO_US[row.get("time_unit", "ns")] / 1e3
        results[linear_key(names[match.group(1)], int(match.group(2)), int(match.group(3)))] = ms
    print("minnow bench_infer run took %.0f s" % (time.perf_counter() - start), file=sys.stderr, flush=True)
    return results, None


def choose_quantized_engine(torch):
    """The strongest int8 engine this torch build has for x86: oneDNN, then fbgemm, x86, qnnpack."""
    supported = list(torch.backends.quantized.supported_engines)
    for engine in ("onednn", "fbgemm", "x86", "qnnpack"):
        if engine in supported:
            return engine, supported
    return None, supported


class FnWorkload:
    """One call of `fn` per iteration, under inference_mode (the interface time_variants expects)."""

    def __init__(self, torch, fn):
        self.torch = torch
        self.fn = fn
        self.loss = None

    def run(self, iterations):
        with self.torch.inference_mode():
            for _ in range(iterations):
                self.fn()

    def timed(self, iterations):
        start = time.perf_counter()
        self.run(iterations)
        return (time.perf_counter() - start) / iterations


def linear_workloads(torch, batch):
    """{case: FnWorkload} for fc1 at `batch`, with identical weights across the cases."""
    nnq = torch.ao.nn.quantized if hasattr(torch, "ao") else torch.nn.quantized
    in_f, out_f = FC1_SHAPE
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(out_f, in_f, generator=gen) * 0.02
    b = torch.randn(out_f, generator=gen) * 0.02
    x = torch.rand(batch, in_f, generator=gen) * 4.0
    qw = torch.quantize_per_channel(w, torch.full((out_f,), LINEAR_WEIGHT_SCALE, dtype=torch.double),
                                    torch.zeros(out_f, dtype=torch.long), 0, torch.qint8)
    static = nnq.Linear(in_f, out_f, dtype=torch.qint8)
    static.set_weight_bias(qw, b)
    static.scale, static.zero_point = LINEAR_OUTPUT
    dynamic = nnq.dynamic.Linear(in_f, out_f, dtype=torch.qint8)
    dynamic.set_weight_bias(qw, b)
    fp32 = torch.nn.Linear(in_f, out_f)
    with torch.no_grad():
        fp32.weight.copy_(w)
        fp32.bias.copy_(b)
    fp32.eval()
    xq = torch.quantize_per_tensor(x, LINEAR_INPUT_SCALE, 0, torch.quint8)
    return {
        "quantized": FnWorkload(torch, lambda: static(xq)),
        "end_to_end": FnWorkload(torch, lambda: static(torch.quantize_per_tensor(
            x, LINEAR_INPUT_SCALE, 0, torch.quint8)).dequantize()),
        "dynamic": FnWorkload(torch, lambda: dynamic(x)),
        "fp32": FnWorkload(torch, lambda: fp32(x)),
    }


def run_pytorch_linear(torch, blas, threads, quick, openblas_threads):
    """Returns {linear key: median ms per call}; the four cases are timed interleaved."""
    reps = 3 if quick else 9
    block_s = 0.05 if quick else 0.2
    warmup_s = 0.05 if quick else 0.3
    results = {}
    for batch in LINEAR_BATCHES:
        for t in threads:
            torch.set_num_threads(t)
            blas.set_threads(t if openblas_threads == "match" else int(openblas_threads))
            start = time.perf_counter()
            sec = time_variants(linear_workloads(torch, batch), reps, block_s, warmup_s)
            for case, s in sec.items():
                results[linear_key(case, batch, t)] = s * 1e3
            print("pytorch linear batch:%d threads:%d %s  (%.1f s)" % (
                batch, t, "  ".join("%s=%.3f ms" % (c, s * 1e3) for c, s in sec.items()),
                time.perf_counter() - start), file=sys.stderr, flush=True)
    return results


def print_linear_table(keys, minnow, pytorch):
    descriptions = {case: text for case, _, text in LINEAR_CASES}
    print("| fc1 %d → %d | batch | threads | minnow | PyTorch | ratio |" % FC1_SHAPE)
    print("|---|---:|---:|---:|---:|---:|")
    for key in keys:
        if key not in pytorch:
            continue
        _, case, batch, threads = key.split("/")
        batch = int(batch.split(":")[1])

        def cell(ms):
            return "—" if ms is None else "%.3f ms (%.0f GOP/s)" % (ms, linear_gops(batch) / ms * 1e3)

        m, p = minnow.get(key), pytorch[key]
        ratio = "%.2f" % (p / m) if m else "—"
        print("| %s | %d | %s | %s | %s | %s |" % (descriptions[case], batch, threads.split(":")[1], cell(m),
                                                   cell(p), ratio))
    # minnow's own int8 against its fp32 (the "≥ 3× faster than fp32").
    lines = []
    for key in keys:
        _, case, batch, threads = key.split("/")
        if case != "end_to_end":
            continue
        fp32 = minnow.get(linear_key("fp32", int(batch.split(":")[1]), int(threads.split(":")[1])))
        if minnow.get(key) and fp32:
            lines.append("%s %s: %.2f×" % (batch.replace("batch:", "B="), threads.replace("threads:", "T="),
                                           fp32 / minnow[key]))
    if lines:
        print()
        print("minnow int8 end to end vs minnow fp32 (fp32 time / int8 time): " + ", ".join(lines))


# ----------------------------------------------------------------------------------------------------
# Report.


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "us":
        return "%.1f µs" % value if value < 1000 else "%.0f µs" % value
    return "%.0f img/s" % value


def measurement_label(key):
    kind, arch, batch, _ = key.split("/")
    what = {"train": "train", "infer": "infer", "latency": "latency"}[kind]
    return "%s %s %s" % (arch, what, batch.replace("batch:", "B="))


def print_table(keys, minnow, pytorch):
    print("| measurement | threads | minnow | PyTorch | ratio | PyTorch fc1 variant |")
    print("|---|---:|---:|---:|---:|---|")
    for key in keys:
        if key not in pytorch:
            continue
        p = pytorch[key]
        m = minnow.get(key)
        ratio = "—"
        if m is not None and m > 0 and p["value"] > 0:
            r = p["value"] / m if p["unit"] == "us" else m / p["value"]
            ratio = "%.2f" % r
        pv = p["per_variant"]
        other = [v for v in pv if v != p["fc1"]][0]
        margin = (pv[other] / pv[p["fc1"]] - 1) if p["unit"] == "us" else (pv[p["fc1"]] / pv[other] - 1)
        variant = "%s (+%.1f%% vs %s)" % (p["fc1"], 100 * margin, other)
        threads = key.rsplit(":", 1)[1]
        print("| %s | %s | %s | %s | %s | %s |" % (measurement_label(key), threads, fmt(m, p["unit"]),
                                                 fmt(p["value"], p["unit"]), ratio, variant))


def main():
    minnow_env = reexec_if_needed()

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run only this section (repeatable; default: every section): cnn = the two "
                             "Fashion-MNIST CNNs, int8-linear = fc1 as an int8 Linear")
    parser.add_argument("--minnow", default=DEFAULT_MINNOW, help="minnow's bench_cnn binary")
    parser.add_argument("--minnow-infer", metavar="PATH",
                        help="minnow's bench_infer binary (default: bench_infer next to --minnow)")
    parser.add_argument("--arch", choices=("teacher", "student", "all"), default="all")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repetitions (smoke test)")
    parser.add_argument("--json", metavar="OUT", help="save all numbers to this JSON file")
    parser.add_argument("--openblas-threads", default="match", metavar="N|match",
                        help="OpenBLAS threads in the PyTorch process (default: match --threads)")
    args = parser.parse_args()
    sections = [s for s in SECTIONS if s in (args.only or SECTIONS)]
    archs = ARCHS if args.arch == "all" else (args.arch,)
    minnow_infer = args.minnow_infer or os.path.join(os.path.dirname(args.minnow), "bench_infer")
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
        assert threads and all(t > 0 for t in threads)
    except (ValueError, AssertionError):
        parser.error("--threads must be a comma-separated list of positive integers")
    if args.openblas_threads != "match" and not args.openblas_threads.isdigit():
        parser.error("--openblas-threads must be a positive integer or 'match'")
    keys = wanted_keys(archs, threads)
    wall_start = time.perf_counter()
    load_start = load_average()

    import torch
    torch.set_num_interop_threads(1)
    blas = Blas(torch)  # a 64x64 product: single-threaded in OpenBLAS, leaves no busy threads behind
    model_name, nproc = machine_description()
    pytorch_env = {name: os.environ.get(name, "(unset)") for name in (*REQUIRED_UNSET, *REQUIRED_SET)}
    print("torch %s, BLAS: %s" % (torch.__version__, blas.describe()), file=sys.stderr, flush=True)
    engine, engines = choose_quantized_engine(torch)
    if "int8-linear" in sections and engine is None:
        sys.exit("compare_torch.py: this torch has no quantized engine (supported: %s)" % engines)

    # Each section: minnow first (a separate process with the original environment), then PyTorch.
    minnow, minnow_error, pytorch = {}, None, {}
    linear_minnow, linear_error, linear_pytorch = {}, None, {}
    torch_elapsed = 0.0
    if "cnn" in sections:
        minnow, minnow_error = run_minnow(args.minnow, archs, threads, args.quick, minnow_env)
        torch_start = time.perf_counter()
        pytorch = run_pytorch(torch, blas, archs, threads, args.quick, args.openblas_threads)
        torch_elapsed += time.perf_counter() - torch_start
    if "int8-linear" in sections:
        torch.backends.quantized.engine = engine
        linear_minnow, linear_error = run_minnow_linear(minnow_infer, threads, args.quick, minnow_env)
        torch_start = time.perf_counter()
        linear_pytorch = run_pytorch_linear(torch, blas, threads, args.quick, args.openblas_threads)
        torch_elapsed += time.perf_counter() - torch_start
    load_end = load_average()

    print()
    print("## minnow vs PyTorch (%s)" % ", ".join(
        {"cnn": "Fashion-MNIST CNNs", "int8-linear": "int8 Linear at fc1's shape"}[s] for s in sections))
    print()
    print("- machine: %s, nproc %d" % (model_name, nproc))
    print("- torch %s (%s), interop threads 1, intra-op threads = `threads`, OpenBLAS threads = %s"
          % (torch.__version__, sys.executable,
             "`threads`" if args.openblas_threads == "match" else args.openblas_threads))
    print("- BLAS: %s" % blas.describe())
    if "int8-linear" in sections:
        print("- PyTorch quantized engine: %s (supported: %s)" % (engine, ", ".join(engines)))
    print("- PyTorch env: " + ", ".join("%s=%s" % kv for kv in pytorch_env.items()))
    binaries = [b for s, b in (("cnn", args.minnow), ("int8-linear", minnow_infer)) if s in sections]
    print("- minnow: %s, run with the original environment (%s)" % (
        ", ".join(binaries), ", ".join("%s=%s" % (n, minnow_env.get(n, "(unset)"))
                                       for n in (*REQUIRED_UNSET, *REQUIRED_SET))))
    print("- medians: minnow %d repetitions; PyTorch %d blocks of ≥%.2f s%s" % (
        3 if args.quick else 7, 3 if args.quick else 9, 0.05 if args.quick else 0.2,
        " (--quick)" if args.quick else ""))
    print("- load average (1/5/15 min) at start %s, at end %s; other busy processes skew the "
          "threads:%d numbers, PyTorch's OpenMP spin-waiting especially" % (load_start, load_end, nproc))
    if "cnn" in sections:
        print()
        print("### Fashion-MNIST CNNs")
        print()
        print("ratio: throughput minnow/PyTorch, latency PyTorch/minnow (> 1 means minnow is faster)")
        if minnow_error:
            print()
            print(minnow_error)
        print()
        print_table(keys, minnow, pytorch)
    if "int8-linear" in sections:
        print()
        print("### int8 Linear at fc1's shape (x [B × %d] · Wᵀ, W [%d × %d] per-channel int8, bias)" % (
            FC1_SHAPE[0], FC1_SHAPE[1], FC1_SHAPE[0]))
        print()
        print("median time per call; ratio = PyTorch time / minnow time (> 1 means minnow is faster)")
        if linear_error:
            print()
            print(linear_error)
        print()
        print_linear_table(linear_keys(threads), linear_minnow, linear_pytorch)
    print()
    print("PyTorch part took %.0f s, total %.0f s" % (torch_elapsed, time.perf_counter() - wall_start))

    if args.json:
        report = {
            "machine": {"model": model_name, "nproc": nproc},
            "torch": {"version": torch.__version__, "python": sys.executable, "blas": blas.describe(),
                      "env": pytorch_env, "openblas_threads": args.openblas_threads,
                      "quantized_engine": engine},
            "quick": args.quick,
            "sections": sections,
            "load_average": {"start": load_start, "end": load_end},
            "minnow": {"binary": args.minnow, "error": minnow_error, "results": minnow},
            "pytorch": pytorch,
            "int8_linear": {"minnow_binary": minnow_infer, "minnow_error": linear_error,
                            "minnow_ms": linear_minnow, "pytorch_ms": linear_pytorch},
            "units": {"train": "images/s", "infer": "images/s", "latency": "us", "int8_linear": "ms per call"},
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, sort_keys=True)
            out.write("\n")


if __name__ == "__main__":
    main()
