from safeguard.cli import main

raise SystemExit(main())
