"""A ChatRequest as the body of a chat-completions request (wire-formats.md §1.1). Pure functions.

Plain text turns stay `{"role", "content"}` dicts, built with no other work; content parts, tool
calls, tool answers and tools take OpenAI's own shapes, which every compatible server accepts.
"""

from __future__ import annotations

from typing import Any

from llm_sse_proxy.proxy.deltas import ChatRequest, ContentPart, Message, TextPart, Tool


def chat_params(model: str, request: ChatRequest) -> dict[str, Any]:
    """The streaming request's body, without `stream_options` (an adapter option)."""
    params: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in request.messages],
        "stream": True,
    }
    for name in ("temperature", "top_p", "max_tokens", "presence_penalty", "frequency_penalty", "seed"):
        if (value := getattr(request, name)) is not None:
            params[name] = value
    if request.response_format is not None:
        params["response_format"] = dict(request.response_format)
    if request.stop is not None:
        params["stop"] = list(request.stop)
    if request.tools:
        params["tools"] = [_tool(tool) for tool in request.tools]
    if request.tool_choice is not None:
        params["tool_choice"] = _tool_choice(request.tool_choice)
    if request.continue_with is not None:
        _continue(params, request.continue_with)
    for name in ("user", "parallel_tool_calls", "logit_bias"):
        if (value := getattr(request, name)) is not None:
            params[name] = value
    params.update(request.tuning)
    return params


def _continue(params: dict[str, Any], spelling: str) -> None:
    """Ask the server to continue the trailing assistant message (docs: rich-deltas-and-recovery.md §1.1)."""
    if spelling == "prefix_flag":  # DeepSeek's beta URL, Mistral
        params["messages"][-1]["prefix"] = True
    elif spelling == "continue_final_message":  # vLLM, SGLang: leave the final message open-ended
        params["continue_final_message"] = True
        params["add_generation_prompt"] = False
    # trailing_assistant (llama.cpp's server, Ollama): a trailing assistant message is continued as it is


def _message(message: Message) -> dict[str, Any]:
    content = message.content
    if type(content) is str and not message.tool_calls and message.tool_call_id is None:
        return {"role": message.role, "content": content}
    body: dict[str, Any] = {"role": message.role, "content": _content(content)}
    if message.tool_calls:
        body["content"] = body["content"] or None  # OpenAI's own shape for a turn that only calls tools
        body["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        body["tool_call_id"] = message.tool_call_id
    return body


def _content(content: str | tuple[ContentPart, ...]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [_part(part) for part in content]


def _part(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    image: dict[str, Any] = {"url": part.url}
    if part.detail is not None:
        image["detail"] = part.detail
    return {"type": "image_url", "image_url": image}


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.parameters is not None:
        function["parameters"] = dict(tool.parameters)
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice["name"]}}
