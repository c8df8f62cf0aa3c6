"""The proxy's app for granian (`make bench`'s llm-sse-proxy-granian path; issue 13): the same app
that `llm-sse-proxy` serves under uvicorn, built from the config named by LLMSSE_CONFIG."""

import os

from proxy.app import create_app
from proxy.cli import setup_logging
from proxy.config import load_config

setup_logging("warning")
app = create_app(load_config(os.environ["LLMSSE_CONFIG"]))
