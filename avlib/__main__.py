from avlib.cli import main

raise SystemExit(main())
