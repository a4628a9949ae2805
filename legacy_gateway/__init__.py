"""Legacy ZeroMQ gateway: answers the legacy agents on their old ports (see its issue).

Nothing is served from here yet; the package exists so the layout of DESIGN.md section 3 holds.
"""

__all__: list[str] = []
