"""make bench's TensorZero peer: the Rust gateway embedded in the `tensorzero` wheel, served over HTTP by the
wheel itself on 127.0.0.1 (`_start_http_gateway`, what the wheel's `patch_openai_client` starts).

`python bench/tensorzero_gateway.py --config tensorzero.toml --port-file PORT` starts it, writes the port it
picked (the embedded gateway chooses its own; `gateway.bind_address` is not used there) to PORT, and serves
until SIGTERM or SIGINT. The config (bench/peers.py writes it) has one `openai` provider per bench model, with
`api_base` at the bench's mock upstream, and observability off (no ClickHouse).
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from urllib.parse import urlsplit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # the gateway's threads inherit it
    from tensorzero.tensorzero import _start_http_gateway

    gateway = _start_http_gateway(config_file=args.config, clickhouse_url=None, postgres_url=None, valkey_url=None,
                                  async_setup=False)
    port_file = Path(args.port_file)
    partial = port_file.with_suffix(".partial")
    partial.write_text(str(urlsplit(gateway.base_url).port))
    os.replace(partial, port_file)  # whole or absent: the bench polls for it
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    gateway.close()


if __name__ == "__main__":
    main()
