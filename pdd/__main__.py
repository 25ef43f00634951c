from pdd.cli import main

raise SystemExit(main())
