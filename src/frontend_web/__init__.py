"""frontend-web: the browser-facing service, which talks to user-service over HTTP."""
