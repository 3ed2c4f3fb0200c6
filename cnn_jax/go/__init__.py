"""Go for AlphaGo's policy network: the rules and ladder reader (board.py) and the 48 input planes
and training pairs of game records (features.py)."""
