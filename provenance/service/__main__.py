"""``python -m custody.provenance.service serve|token ...`` (the same as ``custody serve``)."""

from custody._cli_service import main

raise SystemExit(main())
