#!/usr/bin/env python3
"""Runs a Google Benchmark binary with repetitions in random interleaving and prints, for each pair of
benchmarks that differ only in their name's first part, the ratio of their medians.

usage: benchmarks/ratios.py BINARY NUMERATOR_PREFIX DENOMINATOR_PREFIX [extra benchmark flags]
e.g.   benchmarks/ratios.py build/release/benchmarks/bench_tensor BM_TensorViewMap BM_RawEigenMap
"""
import json
import subprocess
import sys


def medians(binary, extra):
    out = subprocess.run(
        [binary, "--benchmark_format=json", "--benchmark_repetitions=15",
         "--benchmark_enable_random_interleaving=true", "--benchmark_report_aggregates_only=true",
         "--benchmark_min_time=0.1", *extra],
        check=True, capture_output=True, text=True).stdout
    result = {}
    for row in json.loads(out)["benchmarks"]:
        if row.get("aggregate_name") == "median":
            result[row["run_name"]] = row["real_time"], row["time_unit"]
    return result


def main():
    binary, numerator, denominator, *extra = sys.argv[1:]
    times = medians(binary, extra)
    print(f"{'case':<28} {numerator:>18} {denominator:>18} {'ratio':>8}")
    for name, (t_num, unit) in sorted(times.items()):
        if not name.startswith(numerator + "/"):
            continue
        case = name[len(numerator) + 1:]
        t_den, _ = times[denominator + "/" + case]
        print(f"{case:<28} {t_num:>15.4g} {unit} {t_den:>15.4g} {unit} {t_num / t_den:>8.3f}")


if __name__ == "__main__":
    main()
