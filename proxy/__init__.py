"""llm-sse-proxy: stream any LLM API to the browser as one tiny Server-Sent Events schema."""
