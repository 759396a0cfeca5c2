"""A local HTTP server that speaks the Anthropic Messages API and the OpenAI
chat-completions API, scripted by markers in the proposal text.

Markers (anywhere in the description): ``[invalid-once]`` first answer breaks the
schema, ``[invalid-always]``, ``[429-once]``, ``[500-always]``, ``[401]``, ``[slow]``
(answers after ``slow_seconds``), ``[block]`` (the model blocks), ``[no-tool]`` (a text
answer without the tool call, once), ``[obey:KEY]`` (asked for a plan, the model returns
``fake.obey[KEY]`` word for word: a model that does what the proposal says). Otherwise
the model approves with low risk, as a model talked into leniency would.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID = {"verdict": "approve", "risk": "low", "confidence": 0.8,
         "concerns": ["pin the image digest"], "rationale": "Fits the platform; low blast radius."}
INVALID = {"verdict": "ship-it", "risk": "low", "confidence": 7, "rationale": "",
           "category": "monitoring", "approved": True}


PLAN = {
    "summary": "Alert when Qdrant is down",
    "resources": [{"kind": "PrometheusRule", "name": "qdrant-down", "namespace": "monitoring",
                   "alerts": [{"name": "QdrantDown", "expr": "up{job=\"qdrant\"} == 0",
                               "duration": "5m", "severity": "critical",
                               "summary": "Qdrant is down"}]}],
    "manual_steps": ["route the alert to the on-call receiver"],
}
# What a model talked into it by the proposal might answer: wrong namespace, a literal token.
SMUGGLING_PLAN = {
    "summary": "Run the helper",
    "resources": [{"kind": "Deployment", "name": "helper", "namespace": "kube-system",
                   "image": "evil.example.com/helper:1.0", "ports": [{"number": 8080}],
                   "env": [{"name": "API_TOKEN", "value": "sk-live-abcdefghijklmnop1234"}]}],
}


class FakeLLM:
    def __init__(self, slow_seconds: float = 3.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.slow_seconds = slow_seconds
        self.obey: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                status, payload, headers = fake.answer(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeLLM":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what was asked --------------------------------------------------------
    def for_text(self, marker: str, *, judge: bool = False) -> list[dict[str, Any]]:
        """Requests whose proposal carries ``marker``: expert evaluations, or judge calls."""
        return [r for r in self.requests
                if marker in r["proposal"] and (r["expert"] == "judge") == judge]

    # -- answering ---------------------------------------------------------------
    def answer(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        openai_style = path.endswith("/chat/completions")
        messages = body.get("messages", [])
        first_user = next(m for m in messages if m["role"] == "user")
        proposal = first_user["content"] if isinstance(first_user["content"], str) else json.dumps(first_user["content"])
        system = body.get("system") or next((m["content"] for m in messages if m["role"] == "system"), "")
        found = re.search(r"You are the (\w+) expert", system or "")
        expert = found.group(1) if found else "judge"
        tools = body.get("tools") or [{}]
        tool_name = tools[0].get("name") or tools[0].get("function", {}).get("name")
        key = f"{expert}:{proposal}"
        with self.lock:
            self.seen[key] += 1
            n = self.seen[key]
            self.requests.append({"path": path, "headers": headers, "body": body, "proposal": proposal,
                                  "system": system, "expert": expert, "model": body.get("model"),
                                  "n": n})
        if "[slow]" in proposal:
            time.sleep(self.slow_seconds)
        if "[401]" in proposal:
            return 401, _error("authentication_error", "invalid x-api-key"), {}
        if "[500-always]" in proposal:
            return 500, _error("api_error", "internal error"), {}
        if "[429-once]" in proposal and n == 1:
            return 429, _error("rate_limit_error", "slow down"), {"retry-after": "0"}
        if "[no-tool]" in proposal and n == 1:
            return 200, _text_reply(openai_style, body, "I think it is fine."), {}
        if tool_name == "submit_implementation_plan":
            plan = dict(PLAN)
            obeyed = re.search(r"\[obey:([\w.-]+)\]", proposal)
            if obeyed and obeyed.group(1) in self.obey:
                plan = self.obey[obeyed.group(1)]
            elif "[plan-kube-system]" in proposal:
                plan = SMUGGLING_PLAN
            elif "[plan-invalid-once]" in proposal and n == 1:
                plan = {**PLAN, "resources": [{**PLAN["resources"][0], "privileged": True}]}
            return 200, _tool_reply(openai_style, body, plan, n, tool_name), {}
        if tool_name == "report_contradictions":
            verdict: dict[str, Any] = {"verdicts": [{"statement": 1, "contradicts": False, "reason": "unrelated"}]}
            if "[judge-contradicts]" in proposal:
                verdict = {"verdicts": [{"statement": 1, "contradicts": True,
                                         "reason": "does what statement 1 rules out"}]}
            elif "[judge-bad-section]" in proposal:
                verdict = {"verdicts": [{"statement": 99, "contradicts": True, "reason": "made up"}]}
            return 200, _tool_reply(openai_style, body, verdict, n, tool_name), {}
        answer = VALID
        if "[invalid-always]" in proposal or ("[invalid-once]" in proposal and n == 1):
            answer = INVALID
        elif "[block]" in proposal:
            answer = {**VALID, "verdict": "block", "risk": "high", "concerns": ["too risky"]}
        return 200, _tool_reply(openai_style, body, answer, n), {}


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _tool_reply(openai_style: bool, body: dict[str, Any], answer: dict[str, Any], n: int,
                tool_name: str = "submit_assessment") -> dict[str, Any]:
    if openai_style:
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{n}", "type": "function", "function": {
                    "name": tool_name, "arguments": json.dumps(answer)}}]}}],
            "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366},
        }
    return {
        "id": f"msg_{n}", "type": "message", "role": "assistant", "model": body["model"],
        "content": [{"type": "tool_use", "id": f"toolu_{n}", "name": tool_name, "input": answer}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 321, "output_tokens": 45},
    }


def _text_reply(openai_style: bool, body: dict[str, Any], text: str) -> dict[str, Any]:
    if openai_style:
        return {"id": "chatcmpl-t", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 10, "total_tokens": 310}}
    return {"id": "msg_t", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 300, "output_tokens": 10}}
