"""The serving benchmark's report: targets met or missed, the markdown table, and the latency/throughput plot."""

from __future__ import annotations

from pathlib import Path

OURS = ("ray-serve-haproxy", "ray-serve-proxy")
P99_BUDGET_MS = 25.0
SUCCESS = 0.999


def _best_under_budget(results: list[dict]) -> dict | None:
    """The highest-throughput load point whose p99 stays within budget with (almost) no failures."""
    ok = [r for r in results if r["p99_ms"] <= P99_BUDGET_MS and r["success"] >= SUCCESS]
    return max(ok, key=lambda r: r["throughput"], default=None)


def targets(summary: dict) -> list[dict]:
    systems, limit = summary["systems"], summary["limit"]["best_rows_per_second"]
    out = []

    for body, share in (("json", 0.6), ("arrow", 0.8)):
        batch = [(name, r) for name in OURS for r in systems.get(name, {}).get("batch", [])
                 if r["success"] >= SUCCESS and r.get("body", "json") == body
                 and (body == "json" or r["rows_per_request"] == 1024)]
        if batch:
            name, best = max(batch, key=lambda nr: nr[1]["rows_per_second"])
            ratio = best["rows_per_second"] / limit
            what = "batch endpoint, JSON bodies" if body == "json" else "batch ×1024 endpoint, Arrow bodies"
            out.append({"target": f"{what}: rows/s >= {share} x in-process limit", "met": ratio >= share,
                        "measured": f"{best['rows_per_second']:,.0f} rows/s ({name}, {_clients(best['level'])}) = "
                                    f"{ratio:.2f} x {limit:,.0f}"})

    def best_single(name: str) -> dict | None:
        return _best_under_budget(systems.get(name, {}).get("single", []))

    ours = max((best_single(n) for n in OURS if best_single(n)), key=lambda r: r["throughput"], default=None)
    peers = {n: best_single(n) for n in systems if n not in OURS and "error" not in systems[n]}
    peer_name, peer = max(((n, r) for n, r in peers.items() if r), key=lambda nr: nr[1]["throughput"],
                          default=(None, None))
    if ours:
        ratio = ours["throughput"] / peer["throughput"] if peer else float("inf")
        out.append({"target": f"single-request throughput at p99 <= {P99_BUDGET_MS:.0f} ms >= 1.5 x best peer",
                    "met": ratio >= 1.5,
                    "measured": f"{ours['throughput']:,.0f} req/s vs {peer_name} {peer['throughput']:,.0f} req/s "
                                f"= {ratio:.2f} x" if peer else
                                f"{ours['throughput']:,.0f} req/s; no peer within budget"})

    big = [c for c in summary.get("cold_start", []) if c["model"] == "~100 MB model"]
    if big:
        slowest = max(big, key=lambda c: c["replica_start_to_ready_s"])
        seconds = slowest["replica_start_to_ready_s"]
        out.append({"target": "cold start of the ~100 MB model <= 15 s", "met": seconds <= 15,
                    "measured": f"{seconds:.1f} s from {slowest['source']}, the slower source (fetch + verify + "
                                f"load + warm-up {slowest['fetch_verify_load_warmup_s']:.1f} s)"})
    return out


def _body(result: dict) -> str:
    return " arrow" if result.get("body") == "arrow" else ""


def _clients(level: float) -> str:
    return "1 client" if level == 1 else f"{int(level)} clients"


def markdown(summary: dict) -> str:
    limit = summary["limit"]
    best = limit["best_rows_per_second"]
    machine = summary["machine"]
    lines = [
        f"Serving benchmark, {summary['ran_at']}: {machine['cpus']} CPUs, {machine['platform']}, model "
        f"{summary['model']['version']} ({summary['model']['cities']:,} cities). Load: vegeta on loopback, "
        f"{summary['load']['seconds_per_point']:.0f} s per point; closed loop = fixed clients, open loop = fixed "
        f"arrival rate (req/s offered).",
        "",
        f"**In-process limit** (SavedModel called directly): {best:,.0f} rows/s at batch {limit['best_batch']}; "
        f"batch 1: p50 {limit['batch1_p50_ms']:.2f} ms, p99 {limit['batch1_p99_ms']:.2f} ms.",
        "",
        "| system | load | req/s | rows/s | × limit | p50 ms | p99 ms | success |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in summary["systems"].items():
        if "error" in result:
            lines.append(f"| {name} | failed: {result['error'][:80]} | | | | | | |")
            continue
        for r in result["single"]:
            load = _clients(r["level"]) if r["mode"] == "closed" else f"{int(r['level'])}/s offered"
            lines.append(f"| {name} | {load} | {r['throughput']:,.0f} | {r['throughput']:,.0f} | "
                         f"{r['throughput'] / best:.3f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['success']:.3f} |")
        for r in result.get("batch", []):
            lines.append(f"| {name} batch×{r['rows_per_request']}{_body(r)} | {_clients(r['level'])} | {r['throughput']:,.0f} | "
                         f"{r['rows_per_second']:,.0f} | {r['rows_per_second'] / best:.3f} | {r['p50_ms']:.1f} | "
                         f"{r['p99_ms']:.1f} | {r['success']:.3f} |")
    if summary.get("cold_start"):
        lines += ["", "**Cold start** (replica start → ready, empty cache):", "",
                  "| model | source | size | start → ready | of which fetch + verify + load + warm-up |",
                  "|---|---|---|---|---|"]
        for c in summary["cold_start"]:
            lines.append(f"| {c['model']} | {c['source']} | {c['bytes'] / 1e6:.0f} MB | "
                         f"{c['replica_start_to_ready_s']:.1f} s | {c['fetch_verify_load_warmup_s']:.1f} s |")
    lines += ["", "**Targets**:", "", "| target | met | measured |", "|---|---|---|"]
    lines += [f"| {t['target']} | {'yes' if t['met'] else 'no'} | {t['measured']} |" for t in summary["targets"]]
    profiles = summary["systems"].get("ray-serve-haproxy", {}).get("profiles", {})
    if profiles:
        lines += ["", "**Where the Serve replica's time goes** (py-spy, share of the samples in which a Python thread "
                  "was busy; TensorFlow's own C++ threads are not sampled):", ""]
        for label, profile in profiles.items():
            areas = ", ".join(f"{area} {share:.0%}" for area, share in profile["areas"].items() if share >= 0.02)
            lines.append(f"- {label} ({profile['busy_samples']} busy samples): {areas}")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(18, 6), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    limit = summary["limit"]["best_rows_per_second"]
    bars: list[tuple[str, float, str]] = []
    for name, result in summary["systems"].items():
        if "error" in result:
            continue
        closed = sorted((r for r in result["single"] if r["mode"] == "closed"), key=lambda r: r["level"])
        for axis, key in zip(axes, ("p50_ms", "p99_ms")):
            (line,) = axis.plot([r["throughput"] for r in closed], [r[key] for r in closed], marker="o", label=name)
        bars += [(f"{name} ×{r['rows_per_request']}{_body(r)}, {_clients(r['level'])}", r["rows_per_second"],
                  line.get_color())
                 for r in result.get("batch", []) if r["success"] >= SUCCESS]
    for axis, title in zip(axes, ("p50", "p99")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("throughput (requests/s, one trip each)")
        axis.set_title(f"single requests: {title} latency vs throughput\n(closed loop, 1, 16, 64 clients)")
        axis.axhline(P99_BUDGET_MS, color="grey", linestyle=":", linewidth=1)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[1].legend(fontsize=8)
    labels, rows, colors = zip(*bars) if bars else ((), (), ())
    axes[2].barh(labels, rows, color=colors)
    axes[2].invert_yaxis()
    axes[2].axvline(limit, color="black", linewidth=1, label=f"in-process limit {limit:,.0f}")
    axes[2].axvline(0.6 * limit, color="grey", linestyle=":", linewidth=1, label="target 0.6 × limit (JSON)")
    axes[2].axvline(0.8 * limit, color="grey", linestyle="--", linewidth=1, label="target 0.8 × limit (Arrow ×1024)")
    axes[2].set_xlabel("rows/s")
    axes[2].set_title("batch endpoints: rows/s vs the in-process limit")
    axes[2].tick_params(axis="y", labelsize=8)
    axes[2].legend(fontsize=8, loc="lower right")
    figure.suptitle(f"Serving the destination model, {summary['machine']['cpus']} CPUs")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
