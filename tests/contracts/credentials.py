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
