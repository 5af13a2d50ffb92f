"""OCTAV over HTTP: POST a tensor, get its optimal clip and error curve; read analysed layers.

``service.app:app`` is the ASGI application (``uvicorn service.app:app``); ``create_app`` builds
one from explicit :class:`service.settings.Settings`.  Every number comes from ``octav_core``.
"""
