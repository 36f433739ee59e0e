"""Adapters: the ports of `optialloc.ports` over real backends (beanstalkd, SQLite, paddles)."""
