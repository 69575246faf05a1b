"""Every feature's worked example (``Feature.example``), through the real ``account_features``."""

from __future__ import annotations

import pytest

from detector.features import FEATURE_NAMES, FEATURES, Feature, account_features


def _value(feature: Feature, *, plain: bool = False) -> float | None:
    ex = feature.example
    out = account_features(ex.frame(plain=plain), None if plain else ex.accounts()).collect()
    assert out.height == 1, "an example is one account's requests"
    value: float | None = out[feature.name][0]
    return value


@pytest.mark.parametrize("feature", FEATURES, ids=FEATURE_NAMES)
def test_feature_example(feature: Feature) -> None:
    expected = feature.example.value
    got = _value(feature)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # the example exercises the feature: as many plain requests, a minute apart, differ
    assert _value(feature, plain=True) != pytest.approx(got)
