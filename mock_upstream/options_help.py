"""The mock's options as `mock-upstream --help` lists them (server.py, openai_rich.py and faults.py say more)."""

from __future__ import annotations

OPTION_HELP = (
    ("fail=N:STATUS", "the first N attempts for this key get STATUS (default 503) and an error body"),
    ("cycle=M", "with fail: the count restarts every M attempts, so each run of M starts with N failures"),
    ("key=K", "the counter fail uses (default: the model name as sent), to count apart"),
    ("retry_after=S, retry_after_ms=MS", "with fail: a Retry-After / retry-after-ms header"),
    ("error_type=T", "with fail: the error's type and code (e.g. insufficient_quota)"),
    ("echo_key=1|prefix|basic", "a fail error quotes the key whole, cut short, or as Basic credentials"),
    ("drop_after=K", "K content chunks, then the TCP connection closes mid-body"),
    ("close_after=K", "K chunks, then a clean end of the body: no finish reason, no [DONE]"),
    ("stall_after=K", "K chunks, then silence until the client goes away"),
    ("malformed_after=K", "K chunks, then a chunk that is not JSON, then the rest"),
    ("error_after=K", "K chunks, then an in-band {\"error\": ...} payload and [DONE]"),
    ("big_after=K, big_bytes=N", "K chunks, then one chunk of N characters (default 8 MiB), then the rest"),
    ("endless_after=K", "K chunks, then a data: line that never ends (up to 256 MiB)"),
    ("unended_after=K", "K chunks, then data: lines that never end their event (up to 256 MiB)"),
    ("fieldless_after=K", "K chunks, then a JSON chunk without choices, then the rest"),
    ("delay_ms=MS, first_delay_ms=MS", "a pause before each content chunk, or before the first one only"),
    ("chunk_chars=N", "code points per content chunk (default 5)"),
    ("gzip=1", "the body gzip-compressed, flushed after every event"),
    ("reasoning=K, reasoning_field=F", "K reasoning deltas before the answer (F: reasoning_content or reasoning)"),
    ("tool_calls=N, bad_tool_args=1", "N get_weather calls after the answer; bad_tool_args breaks the last one's JSON"),
    ("refusal=1", "a refusal in delta.refusal instead of the answer"),
    ("bom=1", "the body starts with a UTF-8 BOM (and no role chunk)"),
    ("not_sse=json|html", "a 200 that is not an event stream: the completion as JSON, or an HTML page"),
    ("reject_after=K", "K chunks, then an in-band context_length_exceeded error"),
    ("blank_after=K, blank_bytes=N", "K chunks, then N bytes (16 MiB) of blank lines; with gzip=1 a bomb"),
    ("corrupt_gzip_after=K", "with gzip=1: K chunks, then bytes that do not inflate"),
    ("bad_finish=1, bad_usage=1", "finish_reason as an object; negative token counts"),
    ("linger=1", "the body left open after [DONE]"),
    ("rpm=N", "a provider quota: past N requests a minute for this key, 429 with Retry-After"),
    ("hangup_ms=MS", "silence (not even a head) for MS milliseconds, then the connection closed"),
    ("broken_chunk_after=K", "K chunks, then broken chunked framing, the connection left open"),
    ("fault_attempts=N", "the *_after fault fires on the first N attempts only, so a retry or recovery can succeed"),
    ("continue_with=S", "how this model continues a trailing assistant message (default trailing_assistant)"),
    ("echo_chars=M, start_over=1", "a continuation repeats the prefill's last M characters first; or starts over"),
    ("prefill=reject", "a trailing assistant message gets Anthropic's 400 'does not support assistant message prefill'"),
    ("malformed_times=N", "malformed_after sends N malformed chunks in a row"),
)


def options_epilog() -> str:
    width = max(len(syntax) for syntax, _ in OPTION_HELP)
    rows = "\n".join(f"  {syntax:<{width}}  {meaning}" for syntax, meaning in OPTION_HELP)
    return ("Faults and options, per request: a model-name suffix (gpt+fail=2:503+cycle=3) or a header\n"
            "(x-mock-fail: 2:503). A prompt starting with echo: is echoed back.\n\n" + rows + "\n\n"
            "Dialects: OpenAI at /v1, Anthropic at /v1/messages, Gemini at /v1beta, Ollama at /api/chat.")
