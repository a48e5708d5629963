"""Base configurations; experiments/*.py start from `default.get_config()` and change what their paper row needs."""
