#!/usr/bin/env python3
"""Turns bench/run.sh's NBD runs (one JSON line per fio run) into medians and ratios of hrt's
NBD export to nbdkit (file plugin) and to qemu-nbd on the same file: a markdown table on
stdout and results-nbd.json."""
import json, os, platform, statistics, sys, time

raw_path, out_dir, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = [json.loads(l) for l in open(raw_path) if l.strip()]
WORKLOADS = ["read4k_qd32", "write4k_qd32", "read4k_qd1", "read1m_qd8", "write1m_qd8"]
LABEL = {"read4k_qd32": "4 KiB seq read QD32", "write4k_qd32": "4 KiB seq write QD32", "read4k_qd1": "4 KiB read QD1",
         "read1m_qd8": "1 MiB seq read QD8", "write1m_qd8": "1 MiB seq write QD8"}
PEERS = ["nbdkit", "qemu-nbd"]


def metrics(r):
    n, s = r["requests"], r["seconds"]
    return {"iops": n / s, "mb_per_s": n * r["bytes"] / s / 1e6, "latency_us": s / n * 1e6,
            "server_us_per_op": r["server_cpu_s"] / n * 1e6, "client_us_per_op": r["client_cpu_s"] / n * 1e6, "load": r["load"]}


results = {}
for backing in dict.fromkeys(r["backing"] for r in runs):
    results[backing] = {}
    for w in WORKLOADS:
        entry = {}
        for server in ["hrt"] + PEERS:
            rs = [r for r in runs if r["backing"] == backing and r["workload"] == w and r["server"] == server]
            if rs:
                ms = [metrics(r) for r in rs]
                entry[server] = {"runs": rs, "median": {k: statistics.median(m[k] for m in ms) for k in ms[0]}}
        if "hrt" in entry:
            h = entry["hrt"]["median"]
            entry["ratio"] = {p: {"speed": h["iops"] / entry[p]["median"]["iops"],
                                  "server_cpu": h["server_us_per_op"] / entry[p]["median"]["server_us_per_op"]}
                              for p in PEERS if p in entry}
        results[backing][w] = entry

doc = {"date": os.environ.get("BENCH_DATE") or time.strftime("%Y-%m-%d %H:%M %Z"),
       "machine": {"cores": os.cpu_count(), "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine()),
                   "kernel": platform.release()},
       "rounds": rounds, "results": results}
json.dump(doc, open(os.path.join(out_dir, "results-nbd.json"), "w"), indent=2)


def speed(w, m):
    if w == "read4k_qd1":
        return f"{m['latency_us']:.0f} us"
    if "1m" in w:
        return f"{m['mb_per_s']:.0f} MB/s"
    return f"{m['iops'] / 1000:.1f}K IOPS"


print(f"\nhrt NBD vs nbdkit (file plugin) vs qemu-nbd, same file, fio {''}nbd engine, {doc['date']}, {doc['machine']['cores']} cores, "
      f"{doc['machine']['cpu']}, Linux {doc['machine']['kernel']}; medians of {rounds} rounds (hrt, nbdkit, qemu-nbd in turn)\n")
print("| backing | workload | hrt | nbdkit | qemu-nbd | speed hrt/nbdkit | hrt/qemu-nbd | server CPU/op hrt | nbdkit | qemu-nbd | CPU hrt/nbdkit | hrt/qemu-nbd |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for backing, ws in results.items():
    for w, e in ws.items():
        if "ratio" not in e or len(e["ratio"]) < len(PEERS):
            continue
        h, k, q = (e[s]["median"] for s in ["hrt"] + PEERS)
        rk, rq = e["ratio"]["nbdkit"], e["ratio"]["qemu-nbd"]
        print(f"| {backing} | {LABEL[w]} | {speed(w, h)} | {speed(w, k)} | {speed(w, q)} | {rk['speed']:.2f}x | {rq['speed']:.2f}x | "
              f"{h['server_us_per_op']:.1f} us | {k['server_us_per_op']:.1f} us | {q['server_us_per_op']:.1f} us | {rk['server_cpu']:.2f}x | {rq['server_cpu']:.2f}x |")
loads = [r["load"] for r in runs]
print(f"\nSpeed ratios are throughput (IOPS; at QD1 the inverse of latency), higher is better; server CPU is utime+stime of the "
      f"server process per request, lower is better. Load average at the start of each run: min {min(loads):.2f}, max {max(loads):.2f}.")
print(f"Wrote {os.path.join(out_dir, 'results-nbd.json')}")
