"""The proxy's app for granian (`make bench`'s llm-sse-proxy-granian path; issue 13): the same app
that `llm-sse-proxy` serves under uvicorn, built from the config named by LLMSSE_CONFIG."""

import os

from llm_sse_proxy.proxy.app import create_app
from llm_sse_proxy.proxy.server.cli import setup_logging
from llm_sse_proxy.proxy.config import load_config

setup_logging("warning")
app = create_app(load_config(os.environ["LLMSSE_CONFIG"]))
