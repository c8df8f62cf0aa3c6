import sys

from llm_sse_proxy.proxy.cli import main

sys.exit(main())
