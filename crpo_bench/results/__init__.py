"""Results: the leaderboard of scored runs (leaderboard.py) and the regression gate against a baseline (regression.py)."""
