"""The AI SDK's UI message stream door (`useChat`): routes.py, messages.py (the body in), chunks.py (the stream out)."""
