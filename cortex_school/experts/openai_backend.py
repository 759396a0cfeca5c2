"""LLM-D / vLLM (or any OpenAI chat-completions endpoint), structured output via a forced
function call: the same schema and validation as the Claude backend."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import openai

from cortex_school.experts.llm import ExpertUnavailable, LLMExpert, Reply, ToolSpec, status_error

if TYPE_CHECKING:
    from openai.types.chat import (
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageFunctionToolCall,
        ChatCompletionMessageParam,
        ChatCompletionNamedToolChoiceParam,
    )


def chat_base_url(endpoint: str) -> str:
    """llm-d and vLLM serve the API under /v1; accept the endpoint with or without it."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1") else endpoint + "/v1"


class OpenAICompatibleExpert(LLMExpert):
    backend = "llmd"

    def __init__(
        self, name: str, model: str, *, endpoint: str, api_key: str | None,
        max_tokens: int, timeout: float,
    ) -> None:
        super().__init__(name, model, max_tokens=max_tokens, timeout=timeout)
        self.client = openai.OpenAI(
            base_url=chat_base_url(endpoint), api_key=api_key or "not-needed",
            timeout=timeout, max_retries=0,
        )

    def _first_messages(self, system: str, user: str) -> list[dict[str, Any]]:
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _request(self, messages: list[dict[str, Any]], system: str, tool: ToolSpec) -> Reply:
        # The conversation is kept as plain dicts (the base class is backend-neutral); each one
        # is a message this backend built in the SDK's shape.
        request_messages = cast("list[ChatCompletionMessageParam]", messages)
        tools: list[ChatCompletionFunctionToolParam] = [{"type": "function", "function": {
            "name": tool.name, "description": tool.description, "parameters": tool.schema}}]
        tool_choice: ChatCompletionNamedToolChoiceParam = {"type": "function", "function": {"name": tool.name}}
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=request_messages,
                tools=tools,
                tool_choice=tool_choice,
                max_tokens=self.max_tokens,
            )
        except openai.APITimeoutError:
            raise ExpertUnavailable(f"llmd/{self.model}: no answer within {self.timeout:.0f}s") from None
        except openai.APIConnectionError as exc:
            raise ExpertUnavailable(f"llmd/{self.model}: connection failed: {exc}") from None
        except openai.APIStatusError as exc:
            raise status_error(f"llmd/{self.model}", exc.status_code, str(exc),
                               exc.response.headers) from None
        if not response.choices:
            raise ExpertUnavailable(f"llmd/{self.model}: empty choices")
        message = response.choices[0].message
        # Only a function tool is offered, so the calls are function calls (any other kind a
        # server might send has no ``function`` and is skipped by the check below).
        calls = cast("list[ChatCompletionMessageFunctionToolCall]", message.tool_calls or [])
        call = next((c for c in calls if getattr(c, "function", None) and c.function.name == tool.name), None)
        tool_input: Any = None
        if call is not None:
            try:
                tool_input = json.loads(call.function.arguments)
            except json.JSONDecodeError as exc:
                tool_input = {"__unparseable_arguments__": f"not JSON: {exc}"}
        history: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if call is not None:
            history["tool_calls"] = [{"id": call.id, "type": "function", "function": {
                "name": call.function.name, "arguments": call.function.arguments}}]
        usage = response.usage
        return Reply(
            tool_input=tool_input,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            history=[history],
            tool_call_id=call.id if call is not None else None,
        )

    def _feedback(self, reply: Reply, error: str, tool: ToolSpec) -> list[dict[str, Any]]:
        text = (f"Your answer was rejected: {error}\n"
                f"Call {tool.name} again with arguments that match its schema exactly.")
        if reply.tool_call_id:
            return [{"role": "tool", "tool_call_id": reply.tool_call_id, "content": text}]
        return [{"role": "user", "content": text}]
