"""Runnable examples of tierflow used from a user's own code (see README); they use only the public API, `import tierflow`."""

__all__: list[str] = []
