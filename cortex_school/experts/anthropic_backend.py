"""Claude through the ``anthropic`` SDK, structured output via a forced tool call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import anthropic

from cortex_school.experts.llm import ExpertUnavailable, LLMExpert, Reply, ToolSpec, status_error

if TYPE_CHECKING:
    from anthropic.types import MessageParam, ToolChoiceToolParam, ToolParam


class ClaudeExpert(LLMExpert):
    backend = "anthropic"

    def __init__(
        self, name: str, model: str, *, api_key: str, base_url: str | None,
        max_tokens: int, timeout: float,
    ) -> None:
        super().__init__(name, model, max_tokens=max_tokens, timeout=timeout)
        # Retries are Celery's job (with backoff, without blocking the worker).
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0
        )

    def _first_messages(self, system: str, user: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": user}]

    def _request(self, messages: list[dict[str, Any]], system: str, tool: ToolSpec) -> Reply:
        # The conversation is kept as plain dicts (the base class is backend-neutral); each one
        # is a message this backend built in the SDK's shape.
        request_messages = cast("list[MessageParam]", messages)
        tools: list[ToolParam] = [{"name": tool.name, "description": tool.description,
                                   "input_schema": tool.schema}]
        tool_choice: ToolChoiceToolParam = {"type": "tool", "name": tool.name}
        try:
            response = self.client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=system,
                messages=request_messages,
                tools=tools,
                tool_choice=tool_choice,
            )
        except anthropic.APITimeoutError:
            raise ExpertUnavailable(f"anthropic/{self.model}: no answer within {self.timeout:.0f}s") from None
        except anthropic.APIConnectionError as exc:
            raise ExpertUnavailable(f"anthropic/{self.model}: connection failed: {exc}") from None
        except anthropic.APIStatusError as exc:
            raise status_error(f"anthropic/{self.model}", exc.status_code, str(exc),
                               exc.response.headers) from None
        tool_use = next((b for b in response.content
                         if b.type == "tool_use" and b.name == tool.name), None)
        history_content: list[dict[str, Any]] = []
        for block in response.content:
            if block.type == "tool_use":
                history_content.append(
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                )
            elif block.type == "text" and block.text:
                history_content.append({"type": "text", "text": block.text})
        return Reply(
            tool_input=tool_use.input if tool_use is not None else None,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            history=[{"role": "assistant", "content": history_content or [{"type": "text", "text": "(empty)"}]}],
            tool_call_id=tool_use.id if tool_use is not None else None,
        )

    def _feedback(self, reply: Reply, error: str, tool: ToolSpec) -> list[dict[str, Any]]:
        text = (f"Your answer was rejected: {error}\n"
                f"Call {tool.name} again with an answer that matches its input schema exactly.")
        if reply.tool_call_id:
            return [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": reply.tool_call_id, "is_error": True,
                 "content": text}]}]
        return [{"role": "user", "content": text}]
