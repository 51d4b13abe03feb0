"""The frontend-web ASGI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from frontend_web.client import FrontendClient
from frontend_web.settings import Settings

_PLACEHOLDER_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>frontend-web</title>
</head>
<body>
<main>
<h1>frontend-web</h1>
<p>The sign-up page is coming soon.</p>
<p>This service talks to user-service at <code>{user_service_url}</code>.</p>
</main>
</body>
</html>
"""


def create_app(
    settings: Settings | None = None, *, client: FrontendClient | None = None
) -> FastAPI:
    """Build the frontend-web application.

    Args:
        settings: The configuration; read from the environment when omitted.
        client: The user-service client; built from ``settings`` when omitted. Either
            way, the application's lifespan opens it and closes it.

    Returns:
        The application, its client stored on ``app.state.client``.
    """
    user_service = client or FrontendClient((settings or Settings()).user_service_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await user_service.open()
        app.state.client = user_service
        try:
            yield
        finally:
            await user_service.close()

    app = FastAPI(title="frontend-web", lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def home(client: Annotated[FrontendClient, Depends(get_client)]) -> HTMLResponse:
        """Show the placeholder page until the sign-up page exists."""
        return HTMLResponse(_PLACEHOLDER_PAGE.format(user_service_url=escape(client.base_url)))

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        """Report that the process is alive."""
        return {"status": "ok"}

    return app


def get_client(request: Request) -> FrontendClient:
    """Return the user-service client of the application serving ``request``.

    Args:
        request: The request being served.

    Returns:
        The client stored on ``app.state`` by the lifespan.

    Raises:
        RuntimeError: If the application's lifespan has not stored a client.
    """
    client = getattr(request.app.state, "client", None)
    if isinstance(client, FrontendClient):
        return client
    msg = "no FrontendClient on app.state: was the application's lifespan run?"
    raise RuntimeError(msg)
