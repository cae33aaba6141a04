"""The web page for support staff and managers (``mailhygiene serve``).

Server-rendered pages over the same services as the command line: search and
conversations, linking them to complaint cases, the disposition review and approval of
purge plans, their execution, the quarantine, and a dashboard. ``app.create_app`` builds
the application; one module per domain holds its views (``auth``, ``mail``, ``plans``,
``quarantine``, ``dashboard``), each declaring the permission it needs.
"""

from mailhygiene.web.app import PolicySource, WebContext, create_app, session_secret

__all__ = ["PolicySource", "WebContext", "create_app", "session_secret"]
