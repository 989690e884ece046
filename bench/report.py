"""The report ``make bench`` prints: the table of every workload and system, where the CPU and the
time of a job went, the profiles, the fairness waits, the targets and the notes. It reads only the
results dict (also written as JSON), so a saved run can be rendered again."""

from __future__ import annotations

from collections.abc import Sequence

from bench import fairness
from bench.stats import Json


def _top(pairs: Sequence[Sequence[object]]) -> str:
    """A profile's first six (name, share) pairs."""
    return ", ".join(f"{name} {share:.0%}" for name, share in pairs[:6])


def fmt(x: object, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}" if abs(x) >= 10 or digits == 1 else f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


WIDTH = 124


def render(results: Json) -> str:
    m = results["machine"]
    lines = [
        "",
        f"mlqueue benchmark ({'quick' if results['quick'] else 'full'}) on {m['cpu_count']} x {m['cpu_model']}, "
        f"Python {m['python']}, TensorFlow {m['versions'].get('tensorflow-cpu') or m['versions'].get('tensorflow')}",
        "",
        f"{'workload':<36} {'system':<14} {'jobs/s':>10} {'srv CPU':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'n':>7} {'err':>4} {'client':>11} {'API MB':>6}",
        f"{'':<36} {'':<14} {'':>10} {'ms/job':>8} {'':>8} {'':>8} {'':>8} {'':>7} {'':>4} {'ms/job,max%':>11}",
        "-" * WIDTH,
    ]
    for r in results["rows"]:
        per = r.get("cpu_ms_per_job") or {}
        client = "-" if "client" not in per else f"{per['client']:.2f}"
        if r.get("client_procs"):
            client += f",{r.get('client_busiest_pct', 0):.0f}%"
        lines.append(
            f"{r['workload']:<36} {r['system']:<14} {fmt(r.get('rate')):>10} {fmt(per.get('server'), 2):>8} "
            f"{fmt(r.get('p50_ms'), 2):>8} {fmt(r.get('p95_ms'), 2):>8} {fmt(r.get('p99_ms'), 2):>8} "
            f"{fmt(r.get('count')):>7} {fmt(r.get('errors', 0)):>4} {client:>11} {fmt(r.get('api_rss_mb')):>6}"
        )
    rss = results.get("rss_mb", {})
    if rss:
        lines += [
            "",
            f"RSS after the workloads: API {rss.get('api')} MB (max after any workload "
            f"{results.get('api_rss_max_mb')} MB), worker {rss.get('worker')} MB "
            f"(every shipped model loaded: {', '.join(results.get('raw', {}).get('loaded', []))})",
        ]
    costs = [r for r in results["rows"] if r.get("cpu_ms_per_job") or r.get("breakdown_ms")]
    if costs:
        lines += [
            "",
            "where the time goes: CPU ms per job by process; p50 ms of each stage of a job's life",
            "-" * WIDTH,
        ]
    for r in costs:
        # per row of a batch the numbers are tiny: keep three significant digits there
        cpu = ", ".join(
            f"{k} {v:.2f}" if v >= 0.1 else f"{k} {v:.3g}" for k, v in (r.get("cpu_ms_per_job") or {}).items()
        )
        stages = ", ".join(f"{k} {v['p50_ms']:.1f}" for k, v in (r.get("breakdown_ms") or {}).items())
        lines.append(f"{r['workload'] + ' / ' + r['system']:<40} cpu: {cpu}" + (f"  | {stages}" if stages else ""))
    for key, prof in (results.get("profiles") or {}).items():
        if prof.get("samples"):
            lines += [
                f"profile {key} ({prof['samples']} GIL samples): {_top(prof['by_thread'])}",
                f"    by library: {_top(prof['by_package'])}",
                f"    by mlqueue function: {_top(prof['by_mlqueue_function'])}",
            ]
    if results.get("fairness"):
        lines += fairness.report_lines(results["fairness"])
    lines += ["", "targets (ratios within this run)", "-" * WIDTH]
    for t in results["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:,.3g} {t['unit']}"
        bound = "-" if t["bound"] is None else f"{t['bound']:,.3g}"
        lines.append(f"{t['status']:<5} {t['target']:<58} {value:>14} (bound {bound}): {t['detail']}")
    if results["notes"]:
        lines += ["", "notes:", *(f"  - {n}" for n in results["notes"])]
    return "\n".join(lines)
