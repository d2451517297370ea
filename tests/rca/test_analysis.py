"""The whole ranking on plain data: root cause first, call-graph discounting, events, CSV input."""

from __future__ import annotations

import numpy as np
import pytest

from engines.rca import Event, Frame, FrameError, analyse, from_csv, service_of
from engines.rca.frame import caller_of, metric_of
from engines.rca.onset import detect_onset

rng = np.random.default_rng(3)
N, FAULT = 240, 160


def incident(edges: bool = True) -> Frame:
    """db's CPU saturates at FAULT; api (calls db) and web (calls api) get slower; cache is unrelated."""
    columns = ["web_latency", "web_cpu", "api_latency", "api_cpu", "db_cpu", "db_latency", "cache_cpu", "cache_mem"]
    values = rng.normal(1.0, 0.02, size=(N, len(columns)))
    after = slice(FAULT, None)
    values[after, columns.index("db_cpu")] += 2.0
    values[after, columns.index("db_latency")] += 1.0
    values[after, columns.index("api_latency")] += 3.0
    values[after, columns.index("web_latency")] += 4.0
    if edges:
        columns += ["db_latency@api", "api_latency@web"]
        extra = rng.normal(1.0, 0.02, size=(N, 2))
        extra[after, 0] += 1.0
        extra[after, 1] += 3.0
        values = np.column_stack([values, extra])
    return Frame(np.arange(N, dtype=float) * 15.0, columns, values)


def test_names() -> None:
    assert service_of("carts-db_cpu") == "carts"
    assert service_of("cart_latency@web") == "cart"
    assert metric_of("cart_latency_p50@web") == "latency_p50"
    assert caller_of("cart_latency@web") == "web"
    assert caller_of("cart_cpu") is None


def test_call_graph_puts_the_deepest_service_first() -> None:
    report = analyse(incident(), FAULT * 15.0)
    assert report.ranking()[0] == "db"
    assert report.ranking().index("db") < report.ranking().index("web")
    top = report.candidates[0]
    assert top.score >= report.threshold
    assert {m.metric for m in top.metrics} >= {"cpu"}
    assert top.onset == pytest.approx(FAULT * 15.0, abs=30)
    by_name = {c.service: c for c in report.candidates}
    assert by_name["api"].explained_by is not None


def test_without_the_graph_the_loudest_symptom_wins() -> None:
    report = analyse(incident(edges=False), FAULT * 15.0, use_graph=False)
    assert report.ranking()[0] == "web"  # biggest latency move; nothing says it is inherited


def test_onset_is_detected_when_no_time_is_given() -> None:
    report = analyse(incident(), None)
    assert report.onset_detected
    assert report.anomaly_time == pytest.approx(FAULT * 15.0, abs=15)
    assert report.ranking()[0] == "db"


def test_chain_links_the_reported_services() -> None:
    report = analyse(incident(), FAULT * 15.0, threshold=0.3)
    assert report.chain
    assert report.chain[0].source == "db"


def test_warning_events_raise_a_quiet_service() -> None:
    quiet = analyse(incident(), FAULT * 15.0)
    cache = next(c for c in quiet.candidates if c.service == "cache")
    loud = analyse(incident(), FAULT * 15.0, events=[Event(FAULT * 15.0 + 30, "cache", "OOMKilled", "oom")])
    cache_after = next(c for c in loud.candidates if c.service == "cache")
    assert cache_after.score > cache.score
    assert cache_after.events[0].reason == "OOMKilled"


def test_bad_windows_are_refused() -> None:
    with pytest.raises(FrameError, match="baseline"):
        analyse(incident(), 0.0)
    flat = Frame(np.arange(10.0), ["a_cpu"], np.ones((10, 1)))
    with pytest.raises(FrameError, match="constant"):
        analyse(flat, 5.0)


def test_csv_round_trip_and_errors() -> None:
    frame = incident(edges=False)
    header = "time," + ",".join(frame.columns)
    rows = [",".join([f"{t:g}", *(f"{v:.6f}" for v in row)]) for t, row in zip(frame.time, frame.values, strict=True)]
    parsed = from_csv("\n".join([header, *rows]))
    assert parsed.columns == frame.columns
    assert np.allclose(parsed.values, frame.values, atol=1e-6)
    with pytest.raises(FrameError, match="time"):
        from_csv("a_cpu\n1\n")
    with pytest.raises(FrameError, match="not a number"):
        from_csv("time,a_cpu\n1,abc\n")
    with pytest.raises(FrameError, match="rows"):
        from_csv("time,a_cpu\n" + "1,2\n" * 5, max_rows=3)


def test_with_no_time_a_louder_later_change_does_not_hide_the_fault() -> None:
    """db's CPU saturates at 80; at 160 a batch tier's CPU drops sharply (load moved away: not bad, but the
    window's strongest change). Every distinct change point is a hypothesis, so db is still found."""
    columns = ["db_cpu", "db_latency", "web_latency", *(f"batch_cpu{i}" for i in range(10))]
    values = np.random.default_rng(3).normal(1.0, 0.02, size=(240, len(columns)))
    values[80:, 0] += 0.6
    values[80:, 1] += 0.3
    values[160:, 3:] *= 0.01
    frame = Frame(np.arange(240, dtype=float) * 15.0, columns, values)
    loudest = detect_onset(values).index
    assert abs(loudest - 160) <= 1  # a single onset splits there, with db's fault in the baseline
    assert analyse(frame, loudest * 15.0).ranking()[0] != "db"
    report = analyse(frame, None)
    assert report.ranking()[0] == "db"
    assert report.anomaly_time == pytest.approx(80 * 15.0, abs=15)
    assert report.notes[0].startswith("no anomaly time given: candidate onsets t=")
