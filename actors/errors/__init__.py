"""The ErrorBus's client side: error event models, the ``ERRORS`` stream's configuration,
the durable publisher and its SQLite spool. Every floor that raises events uses it.
"""
