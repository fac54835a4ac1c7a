from aiohook.cli import main

raise SystemExit(main())
