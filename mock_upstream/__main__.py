from mock_upstream.server import main

raise SystemExit(main())
