"""What every service of the system runs on: settings helpers, logs, metrics, the serve command.

It holds no business rule of any service, so sharing it ties no service to another.
"""
