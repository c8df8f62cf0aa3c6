"""What reasoning and tool-using models stream, in the mock's OpenAI dialect (wire-formats.md §1.5-1.6).

Options (headers ``x-mock-<name>`` or model-name suffixes, like the server's others):

- ``reasoning=K``: K reasoning deltas before the answer, in the ``reasoning_content`` field (DeepSeek,
  vLLM) or, with ``reasoning_field=reasoning``, in ``reasoning`` (OpenRouter, Ollama). ``delay_ms`` paces
  them like content, so a model can think for longer than the proxy's ``first_token`` timeout.
- ``tool_calls=N``: N calls of ``get_weather`` after the answer, each an id-and-name piece and then its
  arguments in pieces; the finish reason becomes ``tool_calls``. ``bad_tool_args=1`` makes the last call's
  arguments invalid JSON.
- ``refusal=1``: a refusal in ``delta.refusal`` instead of the answer (the finish reason stays ``stop``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

RICH_OPTIONS = ("reasoning", "reasoning_field", "tool_calls", "bad_tool_args", "refusal")
THOUGHT = "The user said hello. A short, friendly reply will do; no tools are needed for that."
REFUSAL = "I'm sorry, but I can't help with that request."
CITIES = ("Paris", "Tokyo", "Lima", "Oslo")


@dataclass
class RichDeltas:
    """The deltas the options add: before the answer, after it, and instead of it."""

    before: list[dict] = field(default_factory=list)
    after: list[dict] = field(default_factory=list)
    instead: list[dict] | None = None


def rich_deltas(opts: dict[str, str], chunk_chars: int) -> RichDeltas:
    """Raises ValueError on a bad option, which the server answers with a 400."""
    rich = RichDeltas()
    name = opts.get("reasoning_field", "reasoning_content")
    if name not in ("reasoning_content", "reasoning"):
        raise ValueError("reasoning_field must be reasoning_content or reasoning")
    thought = (THOUGHT * (1 + int(opts.get("reasoning", 0)) * chunk_chars // len(THOUGHT)))
    rich.before = [{name: p} for p in _split(thought, chunk_chars)[: int(opts.get("reasoning", 0))]]
    calls = int(opts.get("tool_calls", 0))
    for index in range(calls):
        arguments = json.dumps({"city": CITIES[index % len(CITIES)], "unit": "celsius"})
        if opts.get("bad_tool_args") == "1" and index == calls - 1:
            arguments = arguments[:-1]  # the model stopped before the closing brace
        rich.after.append({"tool_calls": [{"index": index, "id": f"call_mock{index}", "type": "function",
                                           "function": {"name": "get_weather", "arguments": ""}}]})
        rich.after += [{"tool_calls": [{"index": index, "function": {"arguments": p}}]}
                       for p in _split(arguments, chunk_chars)]
    if opts.get("refusal") == "1":
        rich.instead = [{"refusal": p} for p in _split(REFUSAL, chunk_chars)]
    return rich


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]
