"""auth-service: keeps the passwords and answers whether a username and password match.

``POST /auth/validate`` takes ``{"username", "password"}`` and answers
``200 {"valid": bool, "subject": canonical username}``; see
:mod:`auth_service.routes` for every answer, :mod:`auth_service.settings` for the
``AUTH_SERVICE_*`` settings and ``auth-service --help`` for the command line.

The rules it keeps, and where they live:

- Usernames are canonicalised with ``usernames.canonical_username`` (PRECIS
  UsernameCaseMapped), so ``ALICE`` is ``alice``; an invalid one is answered
  ``422`` naming ``username``.
- Passwords (1 to 1,024 characters, never cut) are normalised as RFC 8265
  OpaqueString before they are hashed or checked (:mod:`auth_service.passwords`).
  The command line refuses a password that cannot be normalised. Validation
  answers it like a wrong password, at the same cost (a dummy hash is
  verified): it can match no stored password, and a ``422`` would only tell
  a guesser which strings to skip. A missing or empty password, or one over
  1,024 characters, is a malformed request: ``422``.
- Hashes are argon2id with the settings' parameters, computed in a bounded
  thread pool (:mod:`auth_service.hash_pool`); past its cap, ``503`` with
  ``Retry-After``. A hash with outdated parameters is replaced after a
  successful check.
- An unknown user and a wrong password get byte-identical answers after the
  same work: a dummy hash verified, and one database write (to a row shared
  by all unknown names, for the unknown user).
- Failed attempts are counted per account in the database, shared by
  restarts and replicas; too many lock the account (``429`` with
  ``Retry-After``, no hashing). The rule, and why a success clears the count
  and unknown names are not counted, is in :mod:`auth_service.lockout`.
"""
