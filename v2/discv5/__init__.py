"""Node Discovery v5.1 (Waku protocol id ``d5waku``): sans-I/O core and a thin trio UDP shell."""
