"""The connection manager: pure policy, trio shell, discovery sources, metrics."""
