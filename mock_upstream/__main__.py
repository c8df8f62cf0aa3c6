from llm_sse_proxy.mock_upstream.server import main

raise SystemExit(main())
