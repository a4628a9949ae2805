"""The operator side, the top floor: the ``aisys`` CLI, node lifecycle and keeper, ``aisys check``,
backup/restore, ``aisys import-legacy``, the systemd units.

It may import every floor; nothing below imports it (``.importlinter``).
"""
