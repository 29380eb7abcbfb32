"""A/B split: ratio within tolerance, deterministic per symbol, per-request mode, and labelled forecasts."""

from __future__ import annotations

import pytest

SYMBOLS = ("BTCUSD", "BTCUSDC", "BTCUSDT")


def test_symbol_split_ratio_is_within_tolerance_and_deterministic_across_instances():
    from serving.ab import ABRouter

    symbols = [f"SYM{i:05d}" for i in range(10_000)]
    router = ABRouter(0.2, "symbol")
    arms = [router.arm(s) for s in symbols]
    share = arms.count("challenger") / len(arms)
    assert 0.18 <= share <= 0.22, share
    assert set(arms) == {"champion", "challenger"}
    other = ABRouter(0.2, "symbol")  # a new process would hash the same way (no per-process salt)
    assert [other.arm(s) for s in reversed(symbols)] == arms[::-1]
    assert [router.arm(s) for s in symbols] == arms  # asked again: the same arm
    reseeded = [ABRouter(0.2, "symbol", seed=7).arm(s) for s in symbols]
    assert reseeded != arms and 0.18 <= reseeded.count("challenger") / len(symbols) <= 0.22
    half = [ABRouter(0.5, "symbol").arm(s) for s in symbols]  # a larger share keeps the 20% ones (same hash)
    assert all(h == "challenger" for a, h in zip(arms, half, strict=True) if a == "challenger")


def test_request_mode_ratio_and_the_edges():
    from serving.ab import ABRouter

    router = ABRouter(0.3, "request", seed=1)
    draws = [router.arm("BTCUSDT") for _ in range(10_000)]
    assert 0.28 <= draws.count("challenger") / len(draws) <= 0.32
    assert {ABRouter(0.0, mode).arm(f"S{i}") for mode in ("symbol", "request") for i in range(2000)} == {"champion"}
    assert {ABRouter(1.0, mode).arm(f"S{i}") for mode in ("symbol", "request") for i in range(2000)} == {"challenger"}
    with pytest.raises(ValueError, match="challenger_share"):
        ABRouter(1.5)
    with pytest.raises(ValueError, match="mode"):
        ABRouter(0.5, "user")


def split_seed(want: dict[str, str], share: float = 0.5) -> int:
    """A seed under which the symbol hash sends each symbol of ``want`` to the given arm."""
    from serving.ab import ABRouter

    for seed in range(200):
        router = ABRouter(share, "symbol", seed)
        if all(router.arm(s) == arm for s, arm in want.items()):
            return seed
    raise AssertionError("no seed found")


@pytest.mark.slow
def test_service_labels_each_forecast_with_its_arm_and_version(make_service):
    """challenger_share 0.5: the symbols the hash sends to the challenger are forecast by the challenger's
    version (the baseline), the others by the champion's (NHITS); /predict can pick the arm."""
    from serving.buffers import Bar

    want = {"BTCUSDT": "champion", "BTCUSDC": "challenger", "BTCUSD": "challenger"}
    service = make_service(challenger_share=0.5, split_seed=split_seed(want))
    assert set(service.arms()) == {"champion", "challenger"}
    versions = service.versions
    assert versions["champion"] != versions["challenger"]
    for fc in service.predictor.forecast_batch(list(SYMBOLS)):
        assert fc.arm == want[fc.symbol]
        assert fc.model_version == versions[fc.arm] and not fc.fallback
        assert fc.model_kind == ("nhits" if fc.arm == "champion" else "baseline")
    last = float(service.buffers.window("BTCUSDC")[-1])
    naive = service.predictor.forecast("BTCUSDC")  # the baseline is the naive last value
    assert naive.values[:, 0].tolist() == [pytest.approx(last)] * service.h
    service.ingest(Bar("BTCUSDC", naive.origin_ts + 300, last, last * 1.002, last * 0.998, last * 1.001))
    assert service.predictor.forecast("BTCUSDC").arm == "challenger"  # still the same arm after a bar

    window = service.buffers.window("BTCUSDT")[None, :]
    _, used = service.predict_windows(window, "challenger")
    assert used.info.version == versions["challenger"]
    _, used = service.predict_windows(window, "champion")
    assert used.info.version == versions["champion"]

    nobody = make_service(challenger_share=0.0)
    assert {fc.arm for fc in nobody.predictor.forecast_batch(list(SYMBOLS))} == {"champion"}
