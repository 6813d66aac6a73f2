"""Choosing the reasoning backend from the configuration: the one place that knows them all.

Called at start-up by every entry point, so a backend chosen without what it needs (a URL, a
key, a model name) stops the process with a message naming the variable, instead of failing on
the first ticket.
"""

from __future__ import annotations

from communication_agent.adapters.anthropic_messages import (
    DEFAULT_BASE_URL as ANTHROPIC_URL,
)
from communication_agent.adapters.anthropic_messages import AnthropicMessagesModel
from communication_agent.adapters.http_retry import RetryPolicy
from communication_agent.adapters.offline_model import OfflineReasoningModel, OfflineRules
from communication_agent.adapters.openai_chat import OpenAIChatModel
from communication_agent.adapters.reasoning import ReasoningModel
from communication_agent.adapters.redaction import RedactingModel
from communication_agent.core.config import ConfigurationError, Settings
from communication_agent.core.logging import scrubber


def reasoning_model(settings: Settings, *, retry: RetryPolicy | None = None) -> ReasoningModel:
    """The configured backend, ready to use; raises `ConfigurationError` with the fix."""
    if settings.llm_provider == "offline":
        try:
            return OfflineReasoningModel(OfflineRules(settings.offline_rules_dir))
        except ValueError as exc:
            raise ConfigurationError(f"COMMAGENT_OFFLINE_RULES_DIR: {exc}") from exc
    missing = [
        name
        for name, value in (
            ("COMMAGENT_LLM_API_KEY", settings.llm_api_key),
            ("COMMAGENT_LLM_MODEL", settings.llm_model),
            (
                "COMMAGENT_LLM_BASE_URL",
                settings.llm_base_url
                or (ANTHROPIC_URL if settings.llm_provider == "anthropic" else None),
            ),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(
            f"COMMAGENT_LLM_PROVIDER={settings.llm_provider} needs {', '.join(missing)} "
            "(or use COMMAGENT_LLM_PROVIDER=offline, the built-in rules engine)."
        )
    if settings.llm_api_key is None or settings.llm_model is None:  # checked above; for mypy
        raise ConfigurationError("COMMAGENT_LLM_API_KEY and COMMAGENT_LLM_MODEL are required")
    key = settings.llm_api_key.get_secret_value()
    scrubber.register(key)
    model: ReasoningModel
    if settings.llm_provider == "openai":
        model = OpenAIChatModel(
            base_url=str(settings.llm_base_url),
            api_key=key,
            model=settings.llm_model,
            timeout=settings.llm_timeout_seconds,
            attempts=settings.llm_max_attempts,
            retry=retry,
        )
    else:
        model = AnthropicMessagesModel(
            base_url=settings.llm_base_url or ANTHROPIC_URL,
            api_key=key,
            model=settings.llm_model,
            timeout=settings.llm_timeout_seconds,
            attempts=settings.llm_max_attempts,
            retry=retry,
        )
    return RedactingModel(model) if settings.llm_redact else model
