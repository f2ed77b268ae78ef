"""The dated price and GPU sheet (prices.json beside this module), with user overrides.

An override file (JSON or YAML) uses the same keys; it is merged over the built-in sheet entry by entry,
so a user can change one GPU's hourly price without restating the rest, or add a GPU. The merged sheet is
validated: a wrong key or a negative price is an error naming the entry and the fix.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunesmith.errors import TunesmithError
from tunesmith.yamlsafe import load_yaml_file

BUILTIN_PRICES = Path(__file__).with_name("prices.json")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Assumption(_Strict):
    value: float = Field(ge=0, description="The assumed figure.")
    source: str = Field(description="Where it comes from.")


class Gpu(_Strict):
    memory_gb: float = Field(gt=0, description="GPU memory in GB (1e9 bytes).")
    bf16_tflops: float = Field(gt=0, description="Dense bf16 tensor throughput, TFLOPS.")
    bandwidth_gbps: float = Field(gt=0, description="Memory bandwidth, GB/s.")
    usd_per_hour: float = Field(ge=0, description="On-demand price per GPU-hour.")
    utilisation: float | None = Field(
        None, gt=0, le=1, description="MFU for this GPU (default: assumptions)."
    )
    source: str = Field(description="Datasheet and price page, with dates.")


class Tier(_Strict):
    max_params_b: float = Field(gt=0, description="Largest model size (billions) this tier covers.")
    usd_per_1m_training_tokens: float = Field(ge=0, description="Price per 1M training tokens.")


class ApiFinetune(_Strict):
    usd_per_1m_training_tokens: float | None = Field(None, ge=0, description="Flat training price.")
    tiers: list[Tier] | None = Field(None, description="Training price by model size.")
    usd_per_1m_input: float | None = Field(None, ge=0, description="Fine-tuned model inference, input.")
    usd_per_1m_output: float | None = Field(None, ge=0, description="Fine-tuned model inference, output.")
    source: str

    def training_price(self, params: int) -> float | None:
        """Dollars per 1M training tokens for a model of ``params`` parameters (None: size not offered)."""
        if self.usd_per_1m_training_tokens is not None:
            return self.usd_per_1m_training_tokens
        for tier in sorted(self.tiers or [], key=lambda t: t.max_params_b):
            # Providers tier by the advertised size: Llama-2-70B has 68.98B parameters and is sold as 70B.
            if params * 1.02 <= tier.max_params_b * 1e9:
                return tier.usd_per_1m_training_tokens
        return None


class FrontierApi(_Strict):
    usd_per_1m_input: float = Field(ge=0)
    usd_per_1m_output: float = Field(ge=0)
    source: str


class PriceSheet(_Strict):
    as_of: str = Field(description="Month the figures were taken from their sources.")
    note: str = ""
    assumptions: dict[str, Assumption]
    gpus: dict[str, Gpu]
    api_finetuning: dict[str, ApiFinetune]
    frontier_apis: dict[str, FrontierApi]

    def assume(self, key: str) -> float:
        return self.assumptions[key].value


REQUIRED_ASSUMPTIONS = (
    "utilisation",
    "cpu_utilisation",
    "qlora_slowdown",
    "dora_slowdown",
    "cuda_context_gb",
    "fragmentation",
    "serving_concurrency",
    "serving_utilisation",
    "hours_per_month",
)


def load_prices(override: Path | str | None = None) -> PriceSheet:
    """The built-in sheet, with ``override`` (a JSON/YAML file of the same shape) merged over it."""
    raw = _builtin_raw()
    source = str(BUILTIN_PRICES)
    if override is not None:
        path = Path(override)
        raw = _merge(raw, _read_override(path))
        source = f"{path} (merged over the built-in sheet)"
    try:
        sheet = PriceSheet.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        raise TunesmithError(
            f"Price sheet {source} is invalid: {problems}",
            f"Use the keys of the built-in sheet {BUILTIN_PRICES.name} (gpus.<name>.usd_per_hour, ...).",
        ) from None
    missing = [k for k in REQUIRED_ASSUMPTIONS if k not in sheet.assumptions]
    if missing:
        raise TunesmithError(
            f"Price sheet {source} lacks assumptions: {', '.join(missing)}.",
            "Keep the assumptions section of the built-in sheet.",
        )
    return sheet


@lru_cache(maxsize=1)
def _builtin_text() -> str:
    return BUILTIN_PRICES.read_text(encoding="utf-8")


def _builtin_raw() -> dict[str, Any]:
    return json.loads(_builtin_text())


def _read_override(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TunesmithError(
            f"Price override file {path} does not exist.",
            "Pass a JSON or YAML file with the keys of the built-in sheet.",
        )
    # YAML is a superset of JSON; yamlsafe bounds the read, the size, nesting and aliases, refuses duplicates
    data = load_yaml_file(path, what="Price override file")
    if not isinstance(data, dict):
        raise TunesmithError(f"Price override file {path} must hold a mapping (gpus:, api_finetuning:, ...).")
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
