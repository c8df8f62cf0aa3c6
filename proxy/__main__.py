import sys

from llm_sse_proxy.proxy.server.cli import main

sys.exit(main())
