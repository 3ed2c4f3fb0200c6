"""Go for AlphaGo's policy network: real games from GnuGo (generate.py), game records from SGF files
(sgf.py), the rules and ladder reader (board.py), the 48 input planes and training pairs
(features.py), and move-prediction baselines (baselines.py)."""
