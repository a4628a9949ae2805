"""One Ray Serve application per aisys service; thin adapters over plain-Python cores."""

__all__: list[str] = []
