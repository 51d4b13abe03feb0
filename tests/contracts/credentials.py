"""The credentials the pacts of the system use, shared so that the two pacts agree."""

USERNAME = "alice"
PASSWORD = "correct-horse-battery-staple"
WRONG_PASSWORD = "wrong-password"
# A guess made while alice is locked out. Both pacts use it, so the chain check
# can tell this interaction of auth-service's pact from the others by its body.
LOCKED_OUT_PASSWORD = "guess-number-eleven"
# The Idempotency-Key the sign-up form of frontend-web carries in the examples.
IDEMPOTENCY_KEY = "signup-form-7f3a9c"
# A check asked for while auth-service is overloaded. Both pacts use it, so the
# chain check can tell that interaction of auth-service's pact by its body.
OVERLOADED_PASSWORD = "tried-during-the-rush"
# The time budget frontend-web gives user-service, and user-service auth-service, in the examples.
BUDGET_MS = "2500"
# A check user-service asks for with a token auth-service has revoked. Both pacts' chain
# check can then tell that interaction of auth-service's pact by its body.
REVOKED_TOKEN_PASSWORD = "sent-with-a-revoked-token"
# The client token in the pacts' examples; a real client sends a token of its own, which
# the pacts match by TOKEN_PATTERN (the 43 URL-safe characters of 256 random bits, or more).
EXAMPLE_TOKEN = "pact-example-token-0123456789abcdefghijklmnopq"
AUTHORIZATION = f"Bearer {EXAMPLE_TOKEN}"
TOKEN_PATTERN = r"Bearer [A-Za-z0-9_-]{43,}"
# What a provider answers a refused token with, in the examples.
AUTH_SERVICE_CHALLENGE = 'Bearer realm="auth-service", error="invalid_token"'
USER_SERVICE_CHALLENGE = 'Bearer realm="user-service", error="invalid_token"'
CHALLENGE_PATTERN = r"Bearer .*"
