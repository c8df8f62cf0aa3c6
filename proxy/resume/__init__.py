"""Resumable streams: event ids, the stream store, and the generation registry (issue 10)."""
