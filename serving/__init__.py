"""The HTTP API: a thin FastAPI layer over :class:`recsys.engine.Engine` and the event store.

Build the app with :func:`serving.app.create_app` (``uvicorn --factory serving.app:create_app``
or ``recsys serve``).
"""
