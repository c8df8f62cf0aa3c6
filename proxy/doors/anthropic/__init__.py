"""The Anthropic Messages door: `POST /v1/messages`, streamed and not, for Anthropic's SDKs and the tools built on them."""
