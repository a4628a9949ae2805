"""ResourceScheduler (``/resources``): VRAM leases, one queue, Ray tasks, the VRAM optimizer."""

__all__: list[str] = []
