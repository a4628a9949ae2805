"""The base floor: errors, settings, constants, logging, storage and asyncio helpers,
the NATS client.

It imports no other aisys package; every other floor may import it (``.importlinter``).
"""
