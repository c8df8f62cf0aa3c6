"""The OpenAI-compatible door (`/v1/chat/completions`, `/v1/models`): another encoding of the relay's events."""
