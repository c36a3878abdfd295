"""Prints the side-by-side table from compare-mitmproxy.sh's results folder.

Usage: python3 report.py RESULTS_DIR

RESULTS_DIR/<proxy>/<scenario>.json holds bb-loadgen's JSON line plus the
fields the script adds (peak_rss_kib, proxy_cpu_s; absent for the direct
row, which has no proxy). Scenarios are printed in
the order of RESULTS_DIR/scenarios.txt, proxies in RESULTS_DIR/proxies.txt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

OURS = "bb-egress"
# The rows bb-egress is compared with, in the order the ratios are printed.
PEERS = ("direct", "mitmproxy", "hudsucker")


def load(results: Path) -> tuple[list[str], list[str], dict]:
    scenarios = (results / "scenarios.txt").read_text().split()
    proxies = (results / "proxies.txt").read_text().split()
    data: dict[tuple[str, str], dict] = {}
    for p in proxies:
        for s in scenarios:
            f = results / p / f"{s}.json"
            try:
                data[(p, s)] = json.loads(f.read_text())
            except (OSError, ValueError):
                pass  # not run, or the load generator printed nothing
    return scenarios, proxies, data


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def cpu_us_per_req(r: dict) -> float | None:
    if r.get("proxy_cpu_s") is None or not r.get("requests"):
        return None
    return r["proxy_cpu_s"] * 1e6 / r["requests"]


def cores(r: dict) -> float | None:
    if r.get("proxy_cpu_s") is None or not r.get("elapsed_s"):
        return None
    return r["proxy_cpu_s"] / r["elapsed_s"]


def per_req_us(r: dict, key: str) -> float | None:
    if r.get(key) is None or not r.get("requests"):
        return None
    return r[key] * 1e6 / r["requests"]


def cpu_table(scenarios: list[str], proxies: list[str], data: dict) -> None:
    """CPU per request of every process in the run, and what it implies.

    The load generator, the upstream and the proxy share the machine's
    cores; when their sum per request times the rate is close to the core
    count, the row is CPU-bound and `ceiling` (cores / total CPU per
    request) is the most it could reach on this machine.
    """
    cores_here = os.cpu_count() or 1
    head = ["scenario", "proxy", "loadgen µs/req", "upstream µs/req", "proxy µs/req",
            "total µs/req", "cores busy", "ceiling req/s"]
    rows = []
    for s in scenarios:
        for p in proxies:
            r = data.get((p, s))
            if r is None:
                continue
            parts = [per_req_us(r, k) for k in ("loadgen_cpu_s", "upstream_cpu_s", "proxy_cpu_s")]
            known = [x for x in parts if x is not None]
            total = sum(known) if known else None
            busy = (total * r["requests"] / 1e6 / r["elapsed_s"]
                    if total is not None and r.get("elapsed_s") else None)
            ceiling = cores_here * 1e6 / total if total else None
            rows.append([s, p, *(fmt(x, 0) for x in parts), fmt(total, 0), fmt(busy, 2),
                         fmt(ceiling, 0)])
    if not rows or all(r[5] == "-" for r in rows):
        return
    print()
    print(f"CPU per request by process ({cores_here} CPUs; ceiling = CPUs / total µs per request)")
    print_table(head, rows)


def rss_mib(r: dict) -> float | None:
    return None if r.get("peak_rss_kib") is None else r["peak_rss_kib"] / 1024


def main() -> int:
    results = Path(sys.argv[1])
    scenarios, proxies, data = load(results)
    head = ["scenario", "proxy", "req/s", "p50 ms", "p99 ms", "MB/s",
            "peak RSS MiB", "CPU µs/req", "CPU cores", "errors"]
    rows = []
    for s in scenarios:
        for p in proxies:
            r = data.get((p, s))
            if r is None:
                rows.append([s, p, "not run", "", "", "", "", "", "", ""])
                continue
            rows.append([s, p, fmt(r["req_per_s"]), fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2),
                         fmt(r["mb_per_s"], 2), fmt(rss_mib(r)), fmt(cpu_us_per_req(r), 0),
                         fmt(cores(r), 2), str(r["errors"])])
    print_table(head, rows)
    cpu_table(scenarios, proxies, data)

    def ratio(x, y):
        return None if x is None or not y else x / y

    for peer in PEERS:
        ratio_rows = []
        for s in scenarios:
            a, b = data.get((OURS, s)), data.get((peer, s))
            if not a or not b:
                continue
            ratio_rows.append([
                s,
                fmt(ratio(a["req_per_s"], b["req_per_s"]), 2),
                fmt(ratio(a["p50_ms"], b["p50_ms"]), 2),
                fmt(ratio(a["p99_ms"], b["p99_ms"]), 2),
                fmt(ratio(rss_mib(a), rss_mib(b)), 2),
                fmt(ratio(cpu_us_per_req(a), cpu_us_per_req(b)), 2),
            ])
        print()
        if ratio_rows:
            print(f"ratios {OURS} / {peer} (req/s: higher is better; the rest: lower is better)")
            print_table(["scenario", "req/s", "p50", "p99", "peak RSS", "CPU/req"], ratio_rows)
        else:
            print(f"ratios {OURS} / {peer}: not available (a half not run)")
    for (p, s), r in sorted(data.items()):
        if r.get("first_error"):
            print(f"{p} {s}: first error: {r['first_error']}")
    return 0


def print_table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for i, row in enumerate([head, *rows]):
        cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
