"""RCA accuracy on Sock Shop 1 and Nezha Online Boutique, our engine against BARO and NSigma.

RCAEval protocol, service level: AC@k is the share of cases whose true root-cause service is among the
top k services; Avg@5 is the mean of AC@1..AC@5. Each case is cut to 5 minutes either side of the time the
method is told (for "no time given", either side of the true time, and the method is told nothing). The
settings: the true fault time, the true time + 60 s, and no time.

BARO and NSigma run from the `fse-baro` package, as published. For "no time given" they get the onset from
our change-point detector (so the rankers are compared on the same split), or with `--bocpd` from BARO's own
multivariate BOCPD, as BARO's pipeline does (about a minute per Sock Shop case). The published Sock Shop 1
figures are reproduced first and printed beside ours.

    python benchmarks/rca_accuracy.py                 # everything (several minutes)
    python benchmarks/rca_accuracy.py --methods ours  # only our engine
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_data import Case, nezha_cases, sock_shop_cases, tt_cases
from engines.rca import analyse, service_of
from engines.rca.frame import Frame
from engines.rca.onset import detect_onset

logger = logging.getLogger(__name__)

HALF_WINDOW = 300.0
SETTINGS = {"true time": 0.0, "true + 60 s": 60.0, "no time": None}
PUBLISHED = {  # Sock Shop 1, Avg@5 (cpu, mem), from the RCAEval and BARO papers
    ("BARO", "true time"): (0.99, 0.99),
    ("BARO", "true + 60 s"): (0.98, 0.98),
    ("NSigma", "true time"): (0.98, 0.99),
    ("NSigma", "true + 60 s"): (0.15, 0.33),
}

Method = Callable[[Frame, float | None, frozenset[tuple[str, str]]], list[str]]  # frame, given time, calls


def services(ranked_columns: list[str]) -> list[str]:
    """Column ranking -> service ranking (first appearance wins)."""
    return list(dict.fromkeys(service_of(c) for c in ranked_columns))


def ours(frame: Frame, given: float | None, calls: frozenset[tuple[str, str]] = frozenset(), **options) -> list[str]:
    return analyse(frame, given, calls=set(calls), **options).ranking()


def _dataframe(frame: Frame):
    import pandas as pd

    df = pd.DataFrame(frame.values, columns=frame.columns).ffill().fillna(0)
    df.insert(0, "time", frame.time)
    return df


BOCPD = {"on": False}  # --bocpd: BARO's own change-point detector for "no time" (about 1 min per case)


def _onset_row(frame: Frame) -> int:
    """The row where the anomaly starts, for methods that need one: BARO's BOCPD, or our detector."""
    if BOCPD["on"]:
        from baro.anomaly_detection import bocpd

        found = bocpd(_dataframe(frame).drop(columns=["time"]))
        return found[0] if found else len(frame) // 2
    cleaned = frame.cleaned()
    return int(np.searchsorted(frame.time, cleaned.time[detect_onset(cleaned.values).index]))


def _baro_style(scorer_name: str) -> Method:
    def run(frame: Frame, given: float | None, calls: frozenset[tuple[str, str]] = frozenset()) -> list[str]:
        from baro import root_cause_analysis as rca

        scorer = getattr(rca, scorer_name)
        df = _dataframe(frame)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if given is None:
                index = max(1, min(_onset_row(frame), len(df) - 1))
                ranks = scorer(df, anomalies=[index])["ranks"]
            else:
                ranks = scorer(df, inject_time=given)["ranks"]
        return services(ranks)

    return run


METHODS: dict[str, Method] = {
    "ours": ours,
    "BARO": _baro_style("robust_scorer"),
    "NSigma": _baro_style("nsigma"),
}


def evaluate(cases: list[Case], method: Method, offset: float | None) -> dict:
    """Ranks of the true service per case, per fault type, and seconds per case."""
    ranks: dict[str, list[int]] = defaultdict(list)
    spent = 0.0
    for case in cases:
        centre = case.inject_time + (offset or 0.0)
        window = case.frame.between(centre - HALF_WINDOW, centre + HALF_WINDOW)
        started = time.perf_counter()
        ranking = method(window, None if offset is None else centre, case.calls)
        spent += time.perf_counter() - started
        rank = ranking.index(case.service) + 1 if case.service in ranking else 99
        ranks["all"].append(rank)
        ranks[case.fault].append(rank)
    return {"ranks": ranks, "seconds": spent / max(1, len(cases))}


def ac(ranks: list[int], k: int) -> float:
    return float(np.mean([r <= k for r in ranks]))


def avg5(ranks: list[int]) -> float:
    return float(np.mean([ac(ranks, k) for k in range(1, 6)]))


def print_table(title: str, results: dict[tuple[str, str], dict], faults: list[str]) -> None:
    print(f"\n## {title}\n")
    head = ["method", "time setting", "AC@1", "AC@3", "AC@5", "Avg@5", *[f"{f} Avg@5" for f in faults], "s/case"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (method, setting), result in results.items():
        r = result["ranks"]
        cells = [
            method,
            setting,
            f"{ac(r['all'], 1):.2f}",
            f"{ac(r['all'], 3):.2f}",
            f"{ac(r['all'], 5):.2f}",
            f"**{avg5(r['all']):.2f}**",
            *[f"{avg5(r[f]):.2f}" for f in faults],
            f"{result['seconds']:.3f}",
        ]
        print("| " + " | ".join(cells) + " |")


def run_dataset(title: str, cases: list[Case], methods: list[str]) -> dict[tuple[str, str], dict]:
    faults = sorted({c.fault for c in cases})
    results = {}
    for name in methods:
        for setting, offset in SETTINGS.items():
            results[(name, setting)] = evaluate(cases, METHODS[name], offset)
    print_table(f"{title} ({len(cases)} cases)", results, faults)
    return results


def print_reproduction(results: dict[tuple[str, str], dict]) -> None:
    print("\n## Reproduction of the published Sock Shop 1 figures (Avg@5 cpu / mem)\n")
    print("| method | time setting | published | this harness |")
    print("|---|---|---|---|")
    for (method, setting), (cpu, mem) in PUBLISHED.items():
        if (method, setting) in results:
            r = results[(method, setting)]["ranks"]
            print(f"| {method} | {setting} | {cpu:.2f} / {mem:.2f} | {avg5(r['cpu']):.2f} / {avg5(r['mem']):.2f} |")


def run_ablation(cases: list[Case], title: str) -> None:
    """Our engine with one detector at a time, and without the call graph, at the true time."""
    variants: dict[str, Method] = {
        "ours (all detectors)": ours,
        "ours, no call graph": lambda f, t, c: ours(f, t, c, use_graph=False),
    }
    for name in ("robust", "zscore", "isolation", "dbscan"):
        variants[f"ours, {name} only"] = lambda f, t, c, n=name: ours(f, t, c, detectors=(n,))
    faults = sorted({c.fault for c in cases})
    results = {(name, "true time"): evaluate(cases, method, 0.0) for name, method in variants.items()}
    print_table(f"Ablation, {title}", results, faults)


def run_graph_ablation(cases: list[Case], title: str) -> None:
    """Our engine with and without the call graph at every time setting, and whether the difference is noise."""
    variants: dict[str, Method] = {"ours": ours, "ours, no call graph": lambda f, t, c: ours(f, t, c, use_graph=False)}
    results = {
        (name, setting): evaluate(cases, method, offset)
        for setting, offset in SETTINGS.items()
        for name, method in variants.items()
    }
    print_table(f"Call-graph ablation, {title}", results, sorted({c.fault for c in cases}))
    print_graph_effect({s: (results[("ours", s)], results[("ours, no call graph", s)]) for s in SETTINGS})


def print_graph_effect(pairs: dict[str, tuple[dict, dict]]) -> None:
    """Per setting: Avg@5 with the graph minus without, cases moved up/down, and a paired bootstrap 95 % interval
    (cases resampled with replacement, 10,000 times, fixed seed). An interval that includes 0 is noise."""
    print("\n| time setting | Avg@5 with − without | cases better / worse | 95 % interval |")
    print("|---|---|---|---|")
    for setting, (with_graph, without) in pairs.items():
        diff, low, high, better, worse = paired_effect(with_graph["ranks"]["all"], without["ranks"]["all"])
        print(f"| {setting} | {diff:+.3f} | {better} / {worse} | [{low:+.3f}, {high:+.3f}] |")


def paired_effect(a: list[int], b: list[int], draws: int = 10_000) -> tuple[float, float, float, int, int]:
    """Avg@5(a) − Avg@5(b) over the same cases, its bootstrap 95 % interval, and in how many cases a's Avg@5 was
    higher / lower (a move below the top 5 changes nothing)."""
    gain = np.array([avg5([x]) - avg5([y]) for x, y in zip(a, b, strict=True)])
    picks = np.random.default_rng(0).integers(0, len(gain), size=(draws, len(gain)))
    means = gain[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(gain.mean()), float(low), float(high), int((gain > 0).sum()), int((gain < 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--datasets", nargs="+", default=["sock-shop-1", "nezha-ob", "nezha-tt"])
    parser.add_argument("--ablation", action="store_true", help="also run detector/graph ablations")
    parser.add_argument("--graph", action="store_true", help="only the call-graph ablation, at every time setting")
    parser.add_argument(
        "--bocpd",
        action="store_true",
        help='"no time" for BARO/NSigma via BARO\'s BOCPD (slow) instead of our onset detector',
    )
    args = parser.parse_args()
    BOCPD["on"] = args.bocpd

    if args.graph:
        if "sock-shop-1" in args.datasets:
            run_graph_ablation(sock_shop_cases(), "Sock Shop 1")
        if "nezha-ob" in args.datasets:
            run_graph_ablation(nezha_cases(edges=False), "Nezha OB, pod metrics + call graph")
            run_graph_ablation(nezha_cases(edges=True), "Nezha OB, pod + per-call latency")
        if "nezha-tt" in args.datasets:
            run_graph_ablation(_tt_with_graph(), "Nezha TT, pod metrics + call graph from spans")
        return
    if "sock-shop-1" in args.datasets:
        results = run_dataset("Sock Shop 1", sock_shop_cases(), args.methods)
        print_reproduction(results)
        if args.ablation:
            run_ablation(sock_shop_cases(), "Sock Shop 1")
    if "nezha-ob" in args.datasets:
        run_dataset("Nezha Online Boutique, pod metrics + call graph", nezha_cases(edges=False), args.methods)
        run_dataset("Nezha Online Boutique, pod + per-call latency metrics", nezha_cases(edges=True), args.methods)
        if args.ablation:
            run_ablation(nezha_cases(edges=False), "Nezha OB, pod metrics + call graph")
            run_ablation(nezha_cases(edges=True), "Nezha OB, pod + per-call latency")
    if "nezha-tt" in args.datasets:
        cases = _tt_with_graph()
        results = run_dataset("Nezha Train Ticket 2023-01-29, pod metrics + call graph from spans", cases, args.methods)
        if args.ablation:
            run_ablation(cases, "Nezha TT, pod metrics + call graph from spans")
        run_modalities(cases, {k: v for k, v in results.items() if k[0] != "ours"})


def _tt_with_graph() -> list[Case]:
    from benchmarks.nezha_tt import normal_spans
    from engines.rca.spans import call_graph

    calls = frozenset(call_graph(normal_spans()))  # no graph is published: the one the normal traces show
    return [dataclasses.replace(c, calls=calls) for c in tt_cases()]


def run_modalities(cases: list[Case], baselines: dict[tuple[str, str], dict]) -> None:
    """Train Ticket with each modality and all together (engines/rca/fusion.py), beside the metrics-only methods.
    Traces and logs are read from the case's time to 4 min after (the data's minute files end about then); with
    no time told, from the onset the metrics engine detected. The traces' and logs' normal period is the day's
    `normal/` sample."""
    import copy

    from benchmarks import nezha_tt, nezha_tt_logs
    from engines.rca import multimodal, spans
    from engines.rca.fusion import fuse

    span_base = spans.SpanBaseline.from_spans(nezha_tt.normal_spans())
    log_normal = multimodal.LogNormal.learn(nezha_tt_logs.normal_lines())
    variants = {"ours, metrics": ("metrics",), "ours, traces": ("traces",), "ours, logs": ("logs",),
                "ours, metrics + traces": ("metrics", "traces"), "ours, metrics + logs": ("metrics", "logs"),
                "ours, all": ("metrics", "traces", "logs, with spans"),
                "ours, all, no call graph": ("metrics, no graph", "traces, no graph", "logs, with spans")}  # fmt: skip
    results: dict[tuple[str, str], dict] = {}
    for setting, offset in SETTINGS.items():
        ranks: dict[str, dict[str, list[int]]] = {v: defaultdict(list) for v in variants}
        spent = dict.fromkeys(variants, 0.0)
        for case in cases:
            centre = case.inject_time + (offset or 0.0)
            given = None if offset is None else centre
            began = time.perf_counter()
            window = case.frame.between(centre - HALF_WINDOW, centre + HALF_WINDOW)
            report = analyse(window, given, calls=set(case.calls))
            scores = {"metrics": {c.service: c.score for c in report.candidates}}
            metrics_time = time.perf_counter() - began
            flat = analyse(window, given, use_graph=False)
            scores["metrics, no graph"] = {c.service: c.score for c in flat.candidates}
            # with no time told, traces and logs are read from the time the metrics engine found
            centre = report.anomaly_time if offset is None else centre
            began = time.perf_counter()
            seen = list(nezha_tt.spans_between(centre, centre + 240))
            scores["traces"] = {e.service: e.size for e in spans.score_services(span_base, seen)}
            traces_time = time.perf_counter() - began
            alone = spans.score_services(span_base, seen, graph_use="none")
            scores["traces, no graph"] = {e.service: e.size for e in alone}
            took = {"metrics": metrics_time, "traces": traces_time}
            began = time.perf_counter()
            lines = list(nezha_tt_logs.lines_between(centre, centre + 240))
            reading = time.perf_counter() - began
            for name, given_spans in (("logs", []), ("logs, with spans", seen)):  # with spans: echoes below
                began = time.perf_counter() - reading
                # the window's lines must not teach the next case's miner
                normal = dataclasses.replace(log_normal, templates=copy.deepcopy(log_normal.templates))
                scores[name] = {e.service: e.size for e in multimodal.score_logs(normal, lines, given_spans)}
                took[name] = time.perf_counter() - began
            took |= {"metrics, no graph": metrics_time, "traces, no graph": traces_time}  # about the same work
            for name, used in variants.items():
                given = {m.split(",")[0]: scores[m] for m in used}  # "metrics, no graph" is still metrics
                ranking = [f.service for f in fuse(given)]
                rank = ranking.index(case.service) + 1 if case.service in ranking else 99
                ranks[name]["all"].append(rank)
                ranks[name][case.fault].append(rank)
                spent[name] += sum(took[m] for m in used)
        for name in variants:
            results[(name, setting)] = {"ranks": ranks[name], "seconds": spent[name] / len(cases)}
    results |= baselines
    n = len({s for c in cases for s in [c.service]} | {c.split("_", 1)[0] for c in cases[0].frame.columns})
    faults = sorted({c.fault for c in cases})
    print_table(f"Nezha Train Ticket 2023-01-29 by modality ({len(cases)} cases, {n} services)", results, faults)
    print(f"| random | any | {1 / n:.2f} | {3 / n:.2f} | {5 / n:.2f} | **{3 / n:.2f}** |")
    print("\nThe call graph, all modalities:")
    print_graph_effect({s: (results[("ours, all", s)], results[("ours, all, no call graph", s)]) for s in SETTINGS})


if __name__ == "__main__":
    main()
