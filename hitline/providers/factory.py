"""Builds the three providers a run uses from Settings: offline (`local`) or `openrouter`."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from hitline.config import Settings
from hitline.errors import ConfigError
from hitline.providers.base import ImageEmbedder, ImageRenderer, OutputJudge, StyleAnalyzer
from hitline.providers.ratelimit import Limiter

__all__ = ["Providers", "build_providers"]


def _is_loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Providers:
    embedder: ImageEmbedder
    analyzer: StyleAnalyzer
    renderer: ImageRenderer
    judge: OutputJudge | None = None  # the quality gate's judge (same provider as the analysis)
    escalation: ImageRenderer | None = None  # the stronger model a failed re-render may escalate to


def build_providers(settings: Settings, limiter: Limiter | None = None) -> Providers:
    """The providers for `settings.resolved_provider()`; `limiter` gates every OpenRouter request."""
    if settings.resolved_provider() == "local":
        # imported here: the offline stack pulls in onnxruntime/opencv, the API path does not need them
        from hitline.providers.local.embed import LocalEmbedder
        from hitline.providers.local.analyze import LocalAnalyzer
        from hitline.providers.local.judge import LocalJudge
        from hitline.providers.local.render import LocalRenderer

        return Providers(
            embedder=LocalEmbedder(), analyzer=LocalAnalyzer(), renderer=LocalRenderer(), judge=LocalJudge()
        )

    from hitline.domain.pricing import PriceTable
    from hitline.providers.openrouter.providers import OpenRouterAnalyzer, OpenRouterEmbedder, OpenRouterRenderer
    from hitline.providers.openrouter.client import OpenRouterClient
    from hitline.providers.openrouter.judge import OpenRouterJudge

    key = settings.openrouter_api_key
    if (key is None or not key.get_secret_value().strip()) and _is_loopback(settings.openrouter_base_url):
        # the shipped fake OpenRouter (or another local stand-in) needs no real key
        key = SecretStr("hitline-local-no-key")
    if key is None or not key.get_secret_value().strip():
        raise ConfigError(
            "provider 'openrouter' needs an API key: set HITLINE_OPENROUTER_API_KEY "
            "(or HITLINE_PROVIDER=local to run offline)"
        )
    prices = PriceTable.load(settings.prices_file)
    client = OpenRouterClient(
        settings.openrouter_base_url,
        key,
        timeout_s=settings.openrouter_timeout_s,
        limiter=limiter,
        rate_wait_max_s=settings.rate_wait_max_s,
    )
    return Providers(
        embedder=OpenRouterEmbedder(
            client, settings.embed_model, settings.embed_dim, prices=prices, batch_size=settings.embed_batch_size
        ),
        analyzer=OpenRouterAnalyzer(client, settings.analyze_model, prices),
        renderer=OpenRouterRenderer(client, settings.render_model, prices),
        judge=OpenRouterJudge(client, settings.analyze_model, prices),
        escalation=OpenRouterRenderer(client, settings.escalate_model, prices),
    )
