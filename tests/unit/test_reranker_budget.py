"""The re-ranker's latency budget, with measured costs given by hand (no clock in the test)."""

from online.service import RerankerBudget


def test_a_stall_is_forgotten_and_normal_costs_keep_the_reranker_on() -> None:
    budget = RerankerBudget(budget_ms=30.0)
    assert budget.admits(spent_ms=5.0)  # nothing measured yet
    budget.record(500.0)  # one request stalled for half a second
    skips = 0
    while not budget.admits(spent_ms=5.0):
        skips += 1
        assert skips < 60, "a stall switched the re-ranker off for good"
    # each skip decays the average by 10%: 50 * 0.9^n + 5 <= 30 after 7 skips
    assert skips == 7
    for _ in range(100):  # normal requests: 2 ms each, always admitted
        budget.record(2.0)
        assert budget.admits(spent_ms=5.0)
    assert budget.cost_ms < 30.0
    assert not budget.admits(spent_ms=29.0)  # the time already spent counts too
