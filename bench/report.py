#!/usr/bin/env python3
"""Turns bench/run.sh's raw runs (one JSON line per client run) into medians, hrt/tgt
ratios checked against issue 5's targets, a markdown table (stdout), results.json and
ratios.png (gnuplot)."""
import json, os, platform, statistics, subprocess, sys, time

raw_path, out_dir, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = [json.loads(l) for l in open(raw_path) if l.strip()]

WORKLOADS = ["read4k_qd32", "write4k_qd32", "read4k_qd1", "randread4k_qd32", "read1m_qd8", "write1m_qd8"]
LABEL = {
    "read4k_qd32": "4 KiB seq read QD32", "write4k_qd32": "4 KiB seq write QD32",
    "read4k_qd1": "4 KiB read QD1", "randread4k_qd32": "4 KiB rand read QD32",
    "read1m_qd8": "1 MiB seq read QD8", "write1m_qd8": "1 MiB seq write QD8",
}
SHORT = {
    "read4k_qd32": "read 4K QD32", "write4k_qd32": "write 4K QD32", "read4k_qd1": "read 4K QD1",
    "randread4k_qd32": "rand 4K QD32", "read1m_qd8": "read 1M QD8", "write1m_qd8": "write 1M QD8",
}
# Targets from issue 5: (speed ratio at least, server CPU ratio at most)
SPEED_TARGET = {"read4k_qd32": 1.2, "write4k_qd32": 1.2, "read4k_qd1": 1 / 0.8, "randread4k_qd32": 1.0, "read1m_qd8": 1.0, "write1m_qd8": 1.0}
CPU_TARGET = {"read4k_qd32": 0.5, "write4k_qd32": 0.5, "read4k_qd1": 0.5, "randread4k_qd32": 0.5, "read1m_qd8": 0.7, "write1m_qd8": 0.7}


def metrics(r):
    n, s, b = r["requests"], r["seconds"], r["bytes"]
    gib = n * b / 2**30
    return {
        "iops": n / s,
        "mb_per_s": n * b / s / 1e6,
        "latency_us": s / n * 1e6,
        "server_us_per_cmd": r["server_cpu_s"] / n * 1e6,
        "server_s_per_gib": r["server_cpu_s"] / gib,
        "client_us_per_cmd": r["client_cpu_s"] / n * 1e6,
        "load": r["load"],
        # hrt only (from `hrt status`): what the server allocated per command, less the status requests themselves
        # (login and session setup of the client's one connection are included)
        "allocated_bytes_per_cmd": max(0, r.get("allocated_bytes", 0) - r.get("status_overhead_bytes", 0) - r.get("idle_bytes", 0)) / n,
        "gen0_collections": r.get("gcs", [0, 0, 0])[0],
        "gen2_collections": r.get("gcs", [0, 0, 0])[2],
    }


def median(rs, key):
    return statistics.median(metrics(r)[key] for r in rs)


results = {}
for backing in dict.fromkeys(r["backing"] for r in runs):
    results[backing] = {}
    for w in WORKLOADS:
        entry = {}
        for server in ("hrt", "tgt"):
            rs = [r for r in runs if r["backing"] == backing and r["workload"] == w and r["server"] == server]
            if not rs:
                continue
            entry[server] = {"runs": [dict(r, **metrics(r)) for r in rs],
                             "median": {k: median(rs, k) for k in metrics(rs[0])}}
        if "hrt" in entry and "tgt" in entry:
            h, t = entry["hrt"]["median"], entry["tgt"]["median"]
            cpu_key = "server_s_per_gib" if "1m" in w else "server_us_per_cmd"
            speed = h["iops"] / t["iops"]
            cpu = h[cpu_key] / t[cpu_key]
            entry["ratio"] = {
                "speed": speed, "speed_target": SPEED_TARGET[w], "speed_met": speed >= SPEED_TARGET[w] - 1e-9,
                "latency": h["latency_us"] / t["latency_us"],
                "server_cpu": cpu, "server_cpu_metric": cpu_key, "server_cpu_target": CPU_TARGET[w],
                "server_cpu_met": cpu <= CPU_TARGET[w] + 1e-9,
                "client_cpu": h["client_us_per_cmd"] / t["client_us_per_cmd"],
            }
        results[backing][w] = entry


def mem_gib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20)


cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
doc = {
    "date": os.environ.get("BENCH_DATE") or time.strftime("%Y-%m-%d %H:%M %Z"),
    "machine": {"cores": os.cpu_count(), "memory_gib": mem_gib(), "cpu": cpu_model, "kernel": platform.release()},
    "rounds": rounds,
    "results": results,
}
json.dump(doc, open(os.path.join(out_dir, "results.json"), "w"), indent=2)


def speed_cell(w, m):
    if w == "read4k_qd1":
        return f"{m['latency_us']:.0f} us"
    if "1m" in w:
        return f"{m['mb_per_s']:.0f} MB/s"
    return f"{m['iops'] / 1000:.1f}K IOPS"


def cpu_cell(w, m):
    if "1m" in w:
        return f"{m['server_s_per_gib'] * 1000:.0f} ms/GiB"
    return f"{m['server_us_per_cmd']:.1f} us"


def mark(ok):
    return "yes" if ok else "**no**"


print(f"HandlerRuntime vs tgt, {doc['date']}, {doc['machine']['cores']} cores, {doc['machine']['memory_gib']} GiB, "
      f"{doc['machine']['cpu']}, Linux {doc['machine']['kernel']}; medians of {rounds} rounds (A B alternating)\n")
print("| backing | workload | hrt | tgt | hrt/tgt | target met | server CPU hrt | tgt | hrt/tgt | target met | client CPU/cmd hrt | tgt |")
print("|---|---|---:|---:|---:|---|---:|---:|---:|---|---:|---:|")
met_all = True
for backing, ws in results.items():
    for w, e in ws.items():
        if "ratio" not in e:
            continue
        h, t, r = e["hrt"]["median"], e["tgt"]["median"], e["ratio"]
        if w == "read4k_qd1":
            speed = f"{r['latency']:.2f}x latency"
            speed_goal = f"{mark(r['speed_met'])} (<= 0.8)"
        else:
            speed = f"{r['speed']:.2f}x"
            speed_goal = f"{mark(r['speed_met'])} (>= {r['speed_target']:.1f})"
        cpu_goal = f"{mark(r['server_cpu_met'])} (<= {r['server_cpu_target']:.1f})"
        met_all &= r["speed_met"] and r["server_cpu_met"]
        print(f"| {backing} | {LABEL[w]} | {speed_cell(w, h)} | {speed_cell(w, t)} | {speed} | {speed_goal} | "
              f"{cpu_cell(w, h)} | {cpu_cell(w, t)} | {r['server_cpu']:.2f}x | {cpu_goal} | "
              f"{h['client_us_per_cmd']:.1f} us | {t['client_us_per_cmd']:.1f} us |")
print("\nhrt's garbage collector during the runs (medians; from `hrt status`; the status request and the idle allocation rate "
      "of hrt's timers are subtracted, the client's login and session setup are not):\n")
print("| backing | workload | bytes allocated per command | gen 0 collections per run | gen 2 collections per run |")
print("|---|---|---:|---:|---:|")
for backing, ws in results.items():
    for w, e in ws.items():
        if "hrt" in e:
            m = e["hrt"]["median"]
            print(f"| {backing} | {LABEL[w]} | {m['allocated_bytes_per_cmd']:.2f} | {m['gen0_collections']:.0f} | {m['gen2_collections']:.0f} |")
loads = [r["load"] for r in runs]
print(f"\nLoad average at the start of each run: min {min(loads):.2f}, max {max(loads):.2f}. "
      f"Server CPU is utime+stime of the server process over the run; client CPU is the client's own. "
      f"QD1 speed is latency (lower is better); every other hrt/tgt speed ratio is throughput (higher is better).")
restarts = max((r.get("hrt_restarts", 0) for r in runs), default=0)
if restarts:
    print(f"hrt was stopped from outside {restarts} time(s) during the benchmark and restarted (see the log); its medians include runs after the restart.")
print(f"All targets met: {'yes' if met_all else 'no'}")

# Chart: speed ratio (higher is better) and server CPU ratio (lower is better) per workload and backing.
dat = os.path.join(out_dir, "ratios.dat")
with open(dat, "w") as f:
    f.write('"case" "speed (hrt/tgt, higher is better)" "server CPU (hrt/tgt, lower is better)"\n')
    for backing, ws in results.items():
        for w, e in ws.items():
            if "ratio" in e:
                f.write(f'"{SHORT[w]}\\n{backing}" {e["ratio"]["speed"]:.3f} {e["ratio"]["server_cpu"]:.3f}\n')
png = os.path.join(out_dir, "ratios.png")
script = f"""
set terminal pngcairo size 1400,600 font ",10"
set output "{png}"
set title "HandlerRuntime / tgt, {doc['date']}, {doc['machine']['cores']} cores (QD1 speed = 1/latency)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set yrange [0:*]
set grid ytics
set key top left
set xtics font ",8"
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "black" dt 2
set arrow from graph 0, first 0.5 to graph 1, first 0.5 nohead lc rgb "#d9822b" dt 3
set label "CPU target 0.5 (0.7 at 1 MiB)" at graph 0.01, first 0.56 left tc rgb "#d9822b" font ",8"
plot "{dat}" using 2:xtic(1) title columnhead lc rgb "#2a7ab0", "" using 3 title columnhead lc rgb "#d9822b"
"""
subprocess.run(["gnuplot"], input=script, text=True, check=True)
print(f"\nWrote {os.path.join(out_dir, 'results.json')} and {png}")
