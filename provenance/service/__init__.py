"""The Custody HTTP service: JSON API, registry admission hooks, auditor exports, lineage page.

FastAPI and uvicorn are imported only by :mod:`custody.provenance.service.app` and the
``custody serve`` command, never on the import path of ``custody --help``.
"""
