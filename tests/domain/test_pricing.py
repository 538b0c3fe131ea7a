"""hitline/pricing.py: image and token prices from the shipped table or the user's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitline.errors import ConfigError
from hitline.domain.pricing import PriceTable

NANO = "google/gemini-3.1-flash-image-preview"
QWEN = "qwen/qwen3.5-397b-a17b"


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


@pytest.mark.parametrize("size, usd", [("512px", 0.045), ("1K", 0.067), ("2K", 0.101), ("4K", 0.151)])
def test_nano_banana_2_prices_come_from_the_shipped_table(prices: PriceTable, size: str, usd: float) -> None:
    assert prices.image_cost(NANO, size) == pytest.approx(usd)


def test_local_models_cost_nothing(prices: PriceTable) -> None:
    assert prices.image_cost("local/compositor-v1", "4K") == 0.0
    assert prices.image_cost("local/anything-new", "2K") == 0.0
    assert prices.token_cost("local/stats-analyzer-v1", {"prompt_tokens": 10**6}) == 0.0


def test_unknown_image_model_is_a_config_error_naming_it(prices: PriceTable) -> None:
    with pytest.raises(ConfigError, match="no image price for model 'acme/painter'"):
        prices.image_cost("acme/painter", "1K")


def test_unknown_size_lists_the_known_ones(prices: PriceTable) -> None:
    with pytest.raises(ConfigError, match=r"'512px'.*known sizes: 1K, 2K, 4K"):
        prices.image_cost("google/gemini-3-pro-image-preview", "512px")


def test_token_cost_from_usage_per_million(prices: PriceTable) -> None:
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 500_000}
    assert prices.token_cost(QWEN, usage) == pytest.approx(0.60 + 1.80)
    assert prices.token_cost(QWEN, {}) == 0.0
    assert prices.token_cost(QWEN, None) == 0.0


def test_reported_cost_wins_over_the_table(prices: PriceTable) -> None:
    assert prices.token_cost(QWEN, {"prompt_tokens": 1_000_000, "cost": 0.0123}) == pytest.approx(0.0123)
    # even for a model the table does not know
    assert prices.token_cost("acme/new-llm", {"cost": 0.5}) == 0.5


def test_unknown_token_model_without_reported_cost_is_a_config_error(prices: PriceTable) -> None:
    with pytest.raises(ConfigError, match="no token price for model 'acme/new-llm'"):
        prices.token_cost("acme/new-llm", {"prompt_tokens": 5})


def test_override_file_replaces_the_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('["acme/painter".image]\n"1K" = 0.5\n["acme/llm".tokens]\ninput = 1.0\noutput = 2.0\n')
    prices = PriceTable.load(path)
    assert prices.image_cost("acme/painter", "1K") == 0.5
    assert prices.token_cost("acme/llm", {"prompt_tokens": 1000, "completion_tokens": 1000}) == pytest.approx(0.003)
    with pytest.raises(ConfigError, match=str(path)):
        prices.image_cost(NANO, "1K")


def test_unreadable_override_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="cannot read price table"):
        PriceTable.load(bad)
    with pytest.raises(ConfigError, match="cannot read price table"):
        PriceTable.load(tmp_path / "missing.toml")
