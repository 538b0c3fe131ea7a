"""What a provider call costs, from the price table in hitline/data/prices.toml (or the user's file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hitline.config import load_data_file
from hitline.errors import ConfigError

__all__ = ["PriceTable"]

_LOCAL_PREFIX = "local/"
_PER_TOKENS = 1_000_000  # token prices in the table are USD per million tokens


@dataclass(frozen=True)
class PriceTable:
    """Per-model prices: `image` (USD per output image by size) and `tokens` (USD per million)."""

    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "hitline/data/prices.toml"

    @classmethod
    def load(cls, override: Path | None = None) -> "PriceTable":
        source = str(override) if override is not None else "hitline/data/prices.toml"
        try:
            table = load_data_file("prices.toml", override)
        except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
            raise ConfigError(f"cannot read price table {source}: {exc}") from exc
        return cls(models=table, source=source)

    def image_cost(self, model: str, size: str) -> float:
        """USD for one output image of `size` (512px | 1K | 2K | 4K) from `model`."""
        if model.startswith(_LOCAL_PREFIX):
            return 0.0
        prices = self.models.get(model, {}).get("image")
        if not prices:
            raise ConfigError(
                f"no image price for model {model!r} in {self.source}; "
                f'add a ["{model}".image] table with a price per size (512px, 1K, 2K, 4K)'
            )
        if size not in prices:
            raise ConfigError(
                f"no price for size {size!r} of image model {model!r} in {self.source}; "
                f"known sizes: {', '.join(sorted(prices)) or 'none'}"
            )
        return float(prices[size])

    def token_cost(self, model: str, usage: Mapping[str, Any] | None) -> float:
        """USD for one call from OpenRouter's `usage` block; the provider's reported `cost` wins."""
        usage = usage or {}
        reported = usage.get("cost")
        if isinstance(reported, (int, float)) and not isinstance(reported, bool):
            return float(reported)
        if model.startswith(_LOCAL_PREFIX):
            return 0.0
        prices = self.models.get(model, {}).get("tokens")
        if prices is None:
            raise ConfigError(
                f"no token price for model {model!r} in {self.source}; "
                f'add a ["{model}".tokens] table with input/output USD per million tokens'
            )
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
        return (prompt * float(prices.get("input", 0.0)) + completion * float(prices.get("output", 0.0))) / _PER_TOKENS


def _count(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0
