"""The `openrouter` judge: the analysis (vision) model compares a rendered output with its flat-lay
and answers one JSON object, validated here; an unparseable answer is asked again, like the analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hitline.domain.models import Preset
from hitline.domain.pricing import PriceTable
from hitline.providers.base import Judgement
from hitline.providers.openrouter.client import OpenRouterClient
from hitline.providers.openrouter.providers import _image_part, ask_for_json, image_data_uri

__all__ = ["OpenRouterJudge", "JudgeAnswer", "JUDGE_SYSTEM", "JUDGE_CHECKS"]

JUDGE_SYSTEM = (
    "You are the quality judge of a fashion marketplace. You compare a generated promo image with the "
    "merchant's flat-lay photo of the product. Answer with ONE JSON object and nothing else, with these "
    "keys: same_garment (bool: the output shows the same garment), colour_match (bool), pattern_match "
    "(bool: print, texture and details kept), artefacts (list of short strings: extra limbs, melted "
    "details, duplicated pieces, a frame line or straight border that is not part of the garment, a "
    "leftover patch of the photo's background, a product cut off by the image edge, labels or tags "
    "showing; empty when none), text_or_logo (bool: any text, logo or watermark in the output, also one "
    "carried over from the flat-lay photo), background_ok (bool: the background meets the preset's rule), reasons (list of short "
    "strings explaining every failure)."
)
_REASK = (
    "That was not a valid JSON object with the keys same_garment, colour_match, pattern_match, "
    "artefacts, text_or_logo, background_ok, reasons. Reply with only that JSON object."
)
# answer key -> (check name, value that passes, what a failure means)
JUDGE_CHECKS: dict[str, tuple[str, Any, str]] = {
    "same_garment": ("judge_same_garment", True, "not the same garment as the flat-lay"),
    "colour_match": ("judge_colour", True, "garment colour differs from the flat-lay"),
    "pattern_match": ("judge_pattern", True, "print, texture or details differ from the flat-lay"),
    "artefacts": ("judge_artefacts", [], "generation artefacts"),
    "text_or_logo": ("judge_text", False, "text, logo or watermark in the output"),
    "background_ok": ("judge_background", True, "background breaks the preset's rule"),
}


class JudgeAnswer(BaseModel):
    """What the judge must answer; anything else is a parse failure and is asked again."""

    model_config = ConfigDict(extra="ignore")

    same_garment: bool
    colour_match: bool
    pattern_match: bool
    artefacts: list[str] = Field(default_factory=list)
    text_or_logo: bool
    background_ok: bool
    reasons: list[str] = Field(default_factory=list)

    def checks(self) -> list[dict[str, Any]]:
        out = []
        for key, (name, good, meaning) in JUDGE_CHECKS.items():
            value = getattr(self, key)
            passed = value == good
            detail = f": {', '.join(value)}" if isinstance(value, list) and value else ""
            out.append(
                {
                    "name": name,
                    "passed": passed,
                    "measured": value,
                    "threshold": good,
                    "message": "ok" if passed else meaning + detail,
                    "action": "",
                }
            )
        return out


class OpenRouterJudge:
    """OutputJudge over `POST /chat/completions` with the analysis model (two images + the preset's rule)."""

    def __init__(
        self, client: OpenRouterClient, model: str, prices: PriceTable, max_parse_retries: int = 2, max_side: int = 768
    ) -> None:
        self.client, self.model, self.prices = client, model, prices
        self.max_parse_retries, self.max_side = max(0, max_parse_retries), max_side

    def __repr__(self) -> str:
        return f"OpenRouterJudge(model={self.model!r}, client={self.client!r})"

    @staticmethod
    def request_text(preset: Preset) -> str:
        rule = (
            "pure white RGB 255 background, the product filling at least 85% of the frame, no text"
            if preset.background == "white"
            else "a styled scene background, no text or logos"
        )
        return (
            f"The first image is the merchant's flat-lay of the product; the second is the generated "
            f"{preset.name} image ({preset.width}x{preset.height}, rule: {rule}). Judge the second image "
            f"against the first and answer the JSON object."
        )

    def judge(self, flatlay: Path, output: Path, preset: Preset) -> Judgement:
        parts: list[dict[str, Any]] = [
            _image_part(image_data_uri(Path(flatlay), self.max_side)),
            _image_part(image_data_uri(Path(output), self.max_side)),
            {"type": "text", "text": self.request_text(preset)},
        ]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": parts},
        ]
        answer, cost, raw, problem = ask_for_json(
            self.client,
            self.model,
            self.prices,
            messages,
            JudgeAnswer.model_validate,
            _REASK,
            self.max_parse_retries + 1,
        )
        if answer is not None:
            checks = answer.checks()
            if answer.reasons:
                for c in checks:
                    if not c["passed"]:
                        c["message"] += f" ({'; '.join(answer.reasons)[:200]})"
                        break
            return Judgement(checks=checks, cost_usd=cost, model=self.model, raw=raw)
        # no verdict is not a pass: the output goes to review with the reason
        check = {
            "name": "judge_answer",
            "passed": False,
            "measured": raw[:200],
            "threshold": "JSON verdict",
            "message": f"{self.model} gave no valid verdict after {self.max_parse_retries + 1} tries"
            + (f" ({problem})" if problem else ""),
            "action": "",
        }
        return Judgement(checks=[check], cost_usd=cost, model=self.model, raw=raw, verdict=False)
