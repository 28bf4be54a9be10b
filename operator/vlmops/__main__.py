from vlmops.cli import main

raise SystemExit(main())
