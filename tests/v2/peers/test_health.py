"""The per-peer health score: dial failures, answers, relay score, decay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2.peers.health import HealthBook, HealthConfig, HealthEvent


def test_failures_cost_and_decay() -> None:
    h = HealthBook(HealthConfig(half_life=100.0))
    assert h.score("p", now=0) == 0.0
    h.record("p", HealthEvent.DIAL_FAILED, now=0)
    h.answer("p", None, now=0)  # failed answer
    assert h.score("p", now=0) == pytest.approx(-2.0)
    assert h.score("p", now=100) == pytest.approx(-1.0)  # one half-life later
    h.answer("q", 5.0, now=0)  # slow
    h.answer("r", 0.1, now=0)  # prompt: nothing to pay back, no record kept
    assert h.score("q", now=0) == pytest.approx(-0.5) and h.score("r", now=0) == 0.0 and len(h) == 2


def test_prompt_answers_pay_back_and_clean_records_vanish() -> None:
    h = HealthBook(HealthConfig(answer_ok=0.5, answer_slow=0.5))
    h.answer("p", 9.0, now=0)
    h.answer("p", 0.01, now=0)
    assert h.score("p", now=0) == 0.0 and len(h) == 0


def test_relay_score_counts_only_when_negative_and_graylist_means_replace() -> None:
    h = HealthBook(HealthConfig(graylist_threshold=-100.0, relay_weight=10.0))
    assert h.score("p", now=0, relay_score=50.0) == 0.0
    assert h.score("p", now=0, relay_score=-50.0) == pytest.approx(-5.0)
    scores = {"good": 10.0, "meh": -99.0, "bad": -101.0}
    assert h.to_replace(["good", "meh", "bad", "unknown"], scores) == {"bad"}
    assert h.scores(["good", "bad"], 0, scores)["bad"] < h.scores(["good", "bad"], 0, scores)["good"]


def test_forget_and_config_validation() -> None:
    h = HealthBook()
    for p in ("a", "b"):
        h.record(p, HealthEvent.DIAL_FAILED, now=0)
    h.forget(["a"])
    assert len(h) == 1 and h.score("b", now=0) == 0.0
    with pytest.raises(ValueError):
        HealthConfig(graylist_threshold=1.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(HealthEvent)), st.floats(0, 1000)), max_size=40),
       st.floats(-1e6, 1e6))
def test_score_never_positive_and_only_worse_with_more_trouble(events: list[tuple[HealthEvent, float]],
                                                               relay: float) -> None:
    h = HealthBook()
    t = 0.0
    for ev, dt in events:
        t += dt
        h.record("p", ev, now=t)
    s = h.score("p", now=t, relay_score=relay)
    assert s <= 0.0
    h.record("p", HealthEvent.DIAL_FAILED, now=t)
    assert h.score("p", now=t, relay_score=relay) < s
