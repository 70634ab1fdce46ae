#!/usr/bin/env python3
"""A whole-machine profile's samples, put to their process and, for the services, to the
kernel, to our crates or to a library (docs/BENCHMARKS.md, fifteenth reading).

    ps -eo pid,comm > ps.txt    # during the recording, so every process is named
    perf record -e cpu-clock -F 999 -a -o perf.data -- sleep 12
    perf script -i perf.data -F pid,tid,comm,ip,sym,dso | scripts/perf-shares.py ps.txt
"""

import collections
import re
import sys

SERVICES = ("order-svc", "orchestrator", "stock-svc", "notify-svc")
OURS = ("ticket_platform", "ticket_proto", "order_svc", "stock_svc", "orchestrator", "notify_svc")
SAMPLE = re.compile(r"\s*(.+?)\s+(\d+)/(\d+)\s+([0-9a-f]+)\s+(.*)\s+\((.*)\)\s*$")


def crate(symbol, dso):
    """The crate of a Rust symbol (`<a::B as c::D>::f` is `a`'s), or the shared object."""
    if symbol == "[unknown]":
        return symbol
    if symbol.startswith(("mi_", "_mi_")):
        return "mimalloc"
    if dso.endswith(".so") or ".so." in dso:
        return dso.rsplit("/", 1)[-1]
    name = re.match(r"[<&\s]*(?:mut |dyn )?([A-Za-z_][A-Za-z0-9_]*)", symbol)
    return name.group(1) if name else symbol


def main():
    processes = {0: "idle"}
    with open(sys.argv[1]) as ps:
        for line in ps:
            fields = line.split(None, 1)
            if len(fields) == 2 and fields[0].isdigit():
                processes[int(fields[0])] = fields[1].strip()
    shares = collections.Counter()
    libraries = collections.Counter()
    total = 0
    for line in sys.stdin:
        sample = SAMPLE.match(line)
        if not sample:
            continue
        total += 1
        pid, symbol, dso = int(sample.group(2)), sample.group(5), sample.group(6)
        process = processes.get(pid, "other")
        kernel = "kernel" in dso
        if process in SERVICES:
            if kernel:
                shares["the services, kernel"] += 1
            elif crate(symbol, dso) in OURS:
                shares["the services, our crates"] += 1
            else:
                shares["the services, libraries"] += 1
                libraries[crate(symbol, dso)] += 1
        elif process == "postgres":
            shares["Postgres, kernel" if kernel else "Postgres, user"] += 1
        elif process.startswith("rocketmq-broker"):
            shares["the broker"] += 1
        elif process.startswith("redis"):
            shares["Redis"] += 1
        elif process == "ticketctl":
            shares["the bench"] += 1
        else:
            shares["other, idle"] += 1
    if total == 0:
        sys.exit("no samples read")
    print(f"{total} samples")
    for what, n in shares.most_common():
        print(f"{what:30} {100 * n / total:5.1f}%")
    print("the services' libraries:")
    for what, n in libraries.most_common(15):
        print(f"  {what:28} {100 * n / total:5.2f}%")


if __name__ == "__main__":
    main()
