"""The HTTP service and drawing page: `create_app(settings)` for ASGI servers, `serve(...)` for the CLI."""
from digitrec.serve.app import ServeSettings, create_app
from digitrec.serve.runner import serve

__all__ = ["ServeSettings", "create_app", "serve"]
