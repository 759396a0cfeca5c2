"""The part every LLM backend shares: ask, validate, retry once with the error, guard.

A backend implements three small methods (first messages, one request, feedback
after a bad answer). This class turns them into an :class:`Assessment`:

* the answer must validate against :class:`ExpertAnswer`; if it does not, the model
  is asked once more with the validation error; a second bad answer is an
  :class:`ExpertFailure` (the improvement goes to a person);
* 429, 5xx, overloaded, timeouts and connection errors raise :class:`ExpertUnavailable`
  so the Celery task retries with backoff, never sleeping in the worker;
* the offline rules run as a guardrail (:func:`cortex_school.experts.offline.guard`,
  the same function the evaluation cache's hits go through): the final verdict is the
  more conservative of the two and the risk the higher, so an answer talked into
  leniency by the proposal's own text cannot lower what the rules see.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cortex_school.errors import TransientError, is_transient_status, retry_after_seconds
from cortex_school.experts.base import Expert, ExpertFailure
from cortex_school.experts.offline import guard
from cortex_school.experts.profiles import PROFILES
from cortex_school.experts.prompts import (
    TOOL_DESCRIPTION,
    TOOL_NAME,
    ExpertAnswer,
    answer_schema,
    proposal_message,
    system_prompt,
)
from cortex_school.models import Assessment, Improvement, Usage


class ExpertUnavailable(TransientError):
    """A transient failure (rate limit, overload, 5xx, timeout, network): retry later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, delay=retry_after)
        self.retry_after = retry_after


@dataclass
class Reply:
    """One model response: the tool input it gave (if any) and what it cost."""

    tool_input: Any
    input_tokens: int
    output_tokens: int
    history: list[dict[str, Any]]  # messages to append before feedback
    tool_call_id: str | None


def status_error(where: str, status: int, detail: str, headers: Any) -> Exception:
    """An HTTP error answer as the task should see it: retry later, or give up."""
    message = f"{where}: HTTP {status}: {detail[:300]}"
    if is_transient_status(status):
        return ExpertUnavailable(message, retry_after_seconds(headers))
    return ExpertFailure(message)


@dataclass(frozen=True)
class ToolSpec:
    """The one tool a request forces the model to call: its answer's schema."""

    name: str
    description: str
    schema: dict[str, Any]


ASSESSMENT_TOOL = ToolSpec(TOOL_NAME, TOOL_DESCRIPTION, answer_schema())
Answer = TypeVar("Answer", bound=BaseModel)


class LLMExpert(Expert):
    remote = True

    def __init__(self, name: str, model: str, *, max_tokens: int, timeout: float) -> None:
        super().__init__(name, model)
        self.profile = PROFILES[name]
        self.max_tokens = max_tokens
        self.timeout = timeout

    @abstractmethod
    def _first_messages(self, system: str, user: str) -> list[dict[str, Any]]: ...

    @abstractmethod
    def _request(self, messages: list[dict[str, Any]], system: str, tool: ToolSpec) -> Reply:
        """One API call. Raises ExpertUnavailable (transient) or ExpertFailure (permanent)."""

    @abstractmethod
    def _feedback(self, reply: Reply, error: str, tool: ToolSpec) -> list[dict[str, Any]]:
        """Messages that tell the model its answer was rejected and why."""

    def ask(self, system: str, user: str, tool: ToolSpec, answer: type[Answer]) -> tuple[Answer, Usage]:
        """Force one tool call and validate it; one retry with the validation error."""
        messages = self._first_messages(system, user)
        usage = Usage()
        started = time.monotonic()
        for attempt in (1, 2):
            reply = self._request(messages, system, tool)
            usage.requests += 1
            usage.input_tokens += reply.input_tokens
            usage.output_tokens += reply.output_tokens
            try:
                if reply.tool_input is None:
                    raise ValueError(f"no {tool.name} tool call in the answer")
                parsed = answer.model_validate(reply.tool_input)
            except (ValidationError, ValueError) as exc:
                error = str(exc)[:1500]
                if attempt == 2:
                    raise ExpertFailure(
                        f"{self.backend}/{self.model} answer did not validate after one retry: {error}"
                    ) from None
                messages = messages + reply.history + self._feedback(reply, error, tool)
                continue
            usage.latency_ms = round((time.monotonic() - started) * 1000, 1)
            return parsed, usage
        raise AssertionError("unreachable")

    def evaluate(self, improvement: Improvement) -> Assessment:
        answer, usage = self.ask(system_prompt(self.profile), proposal_message(improvement),
                                 ASSESSMENT_TOOL, ExpertAnswer)
        return self._guarded(improvement, answer, usage)

    def _guarded(self, improvement: Improvement, answer: ExpertAnswer, usage: Usage) -> Assessment:
        raw = Assessment(
            expert=self.name, backend=self.backend, model=self.model, verdict=answer.verdict,
            risk=answer.risk, confidence=answer.confidence, concerns=list(answer.concerns),
            rationale=answer.rationale, usage=usage,
        )
        return guard(improvement, raw, expert=self.name)
