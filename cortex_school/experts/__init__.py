"""Expert backends. :func:`make_expert` picks one from settings."""

from __future__ import annotations

from cortex_school.experts.base import Expert, ExpertFailure
from cortex_school.experts.offline import OfflineExpert
from cortex_school.settings import EXPERTS, Settings


def make_expert(name: str, settings: Settings) -> Expert:
    """The configured backend for expert ``name``.

    ``EXPERT_BACKEND=auto`` (the default) picks Claude when ``ANTHROPIC_API_KEY`` is
    set, else the OpenAI-compatible LLM-D endpoint when ``LLMD_ENDPOINT`` is set, else
    the deterministic offline expert, which names itself in every assessment.
    """
    if name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}")
    cfg = settings.experts
    backend = cfg.resolved_backend()
    model = cfg.expert_models[name]
    if backend == "anthropic":
        from cortex_school.experts.anthropic_backend import ClaudeExpert

        if not cfg.anthropic_api_key:
            raise ValueError("EXPERT_BACKEND=anthropic needs ANTHROPIC_API_KEY")
        return ClaudeExpert(name, model, api_key=cfg.anthropic_api_key,
                            base_url=cfg.anthropic_base_url, max_tokens=cfg.max_tokens,
                            timeout=cfg.timeout_seconds)
    if backend == "llmd":
        from cortex_school.experts.openai_backend import OpenAICompatibleExpert

        if not cfg.llmd_endpoint:
            raise ValueError("EXPERT_BACKEND=llmd needs LLMD_ENDPOINT")
        return OpenAICompatibleExpert(name, cfg.llmd_model or model, endpoint=cfg.llmd_endpoint,
                                      api_key=cfg.llmd_api_key, max_tokens=cfg.max_tokens,
                                      timeout=cfg.timeout_seconds)
    return OfflineExpert(name)


__all__ = ["Expert", "ExpertFailure", "OfflineExpert", "make_expert"]
