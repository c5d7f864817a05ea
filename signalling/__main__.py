from signalling.cli import main

raise SystemExit(main())
