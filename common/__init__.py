"""The lowest layer: small pieces every package may use (``bridge``, ``v2`` and ``failover``).

It imports nothing of the project (docs/decisions/0003-common-layer.md).
"""
