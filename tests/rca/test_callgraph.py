"""The call graph's two rules: callers' client-side latency counts for their callees; callers rank below a callee
whose own latency moved (and never because of what they themselves saw of it)."""

from __future__ import annotations

import numpy as np

from engines.rca import Frame, analyse
from engines.rca.callgraph import apply, outbound

N, FAULT = 120, 80
CALLS = {("web", "cart"), ("web", "ads"), ("home", "ads"), ("checkout", "cart"), ("checkout", "pay")}


def network_delay_on_cart(seed: int = 5) -> Frame:
    """Packets to and from cart are delayed: the latency its callers (web, checkout) see rises, cart's own metrics
    do not move. ads is called by web and home; home saw nothing. pay's memory wanders (a smaller, unrelated
    move)."""
    rng = np.random.default_rng(seed)
    columns = [
        "web_PodClientLatencyP90", "web_PodServerLatencyP90", "web_cpu",
        "checkout_PodClientLatencyP90", "checkout_PodServerLatencyP90", "checkout_cpu",
        "cart_PodServerLatencyP90", "cart_cpu", "ads_PodServerLatencyP90", "ads_cpu",
        "pay_PodServerLatencyP90", "pay_memory", "home_PodClientLatencyP90", "home_cpu",
    ]  # fmt: skip
    values = rng.normal(1.0, 0.02, size=(N, len(columns)))
    after = slice(FAULT, None)
    for name, rise in (("web_PodClientLatencyP90", 0.5), ("checkout_PodClientLatencyP90", 0.5),
                       ("web_PodServerLatencyP90", 0.3), ("checkout_PodServerLatencyP90", 0.3),
                       ("pay_memory", 0.08)):  # fmt: skip
        values[after, columns.index(name)] += rise
    return Frame(np.arange(N, dtype=float) * 15.0, columns, values)


def test_outbound_names() -> None:
    assert outbound("PodClientLatencyP99(s)") and outbound("outbound_error_rate")
    assert not outbound("PodServerLatencyP99(s)") and not outbound("client_cpu_seconds")
    assert not outbound("latency_p50_source")  # an edge column: already the callee's, as its caller saw it


def test_a_delayed_callee_is_found_through_what_its_callers_saw() -> None:
    report = analyse(network_delay_on_cart(), FAULT * 15.0, calls=CALLS)
    assert report.ranking()[0] == "cart"
    top = report.candidates[0]
    assert "of its callers (checkout, web)" in top.metrics[0].metric
    assert top.metrics[0].column.endswith("_PodClientLatencyP90")
    # ads: one of its two callers saw it slow, so half the credit
    by_name = {c.service: c for c in report.candidates}
    assert by_name["ads"].score < by_name["cart"].score - 0.3


def test_without_the_graph_the_callers_come_first() -> None:
    report = analyse(network_delay_on_cart(), FAULT * 15.0, use_graph=False)
    assert report.ranking()[0] in {"web", "checkout"}
    assert report.ranking().index("cart") > 1


def test_a_caller_is_not_capped_by_what_it_saw_itself() -> None:
    """web's client-side latency is credited to cart; that credit must not cap web's own server latency (the
    callers' evidence is not the callee's), so with cart's own metrics flat, web keeps its score."""
    frame = network_delay_on_cart()
    j = frame.columns.index
    scores = np.zeros(len(frame.columns))
    scores[j("web_PodClientLatencyP90")] = 0.9
    scores[j("checkout_PodClientLatencyP90")] = 0.7
    scores[j("web_PodServerLatencyP90")] = 0.8
    step = apply(frame.columns, frame.by_service(), scores, CALLS)
    assert step.adjusted[j("web_PodClientLatencyP90")] == 0.0  # not web's own
    assert step.heard["cart"].score == 0.8 and step.heard["cart"].callers == ["checkout", "web"]
    assert step.heard["ads"].score == 0.45 and step.heard["ads"].callers == ["home", "web"]
    assert step.adjusted[j("web_PodServerLatencyP90")] == 0.8  # no callee's own latency moved: no cap
    assert "web" not in step.explained_by


def test_a_callee_whose_own_latency_moved_caps_its_caller() -> None:
    frame = network_delay_on_cart()
    j = frame.columns.index
    scores = np.zeros(len(frame.columns))
    scores[j("web_PodServerLatencyP90")] = 0.95
    scores[j("cart_PodServerLatencyP90")] = 0.7
    step = apply(frame.columns, frame.by_service(), scores, CALLS)
    assert step.explained_by == {"web": "cart"}  # checkout's latency did not move: nothing to explain
    assert 0.69 < step.adjusted[j("web_PodServerLatencyP90")] < 0.7
    assert step.adjusted[j("web_cpu")] == 0.0  # resource columns are never touched


def test_no_edges_no_change() -> None:
    frame = network_delay_on_cart()
    scores = np.linspace(0.1, 0.9, len(frame.columns))
    step = apply(frame.columns, frame.by_service(), scores, set())
    assert np.array_equal(step.adjusted, scores) and not step.heard and not step.explained_by
