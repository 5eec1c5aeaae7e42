"""Stats: statistics over scores (aggregate.py corpus means, effects.py paired effects, validity.py metric validity)."""
