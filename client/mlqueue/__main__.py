from mlqueue.cli import main

raise SystemExit(main())
