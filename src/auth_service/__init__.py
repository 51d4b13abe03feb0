"""auth-service: keeps the passwords and answers whether a username and password match."""
