"""Internal: the tools the shipped graphs use (knowledge base, helpdesk, retail database, datasets);
the public surface is `import tierflow`."""

__all__: list[str] = []
