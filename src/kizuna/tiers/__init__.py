"""Member ranks (会員ランク): ordered tiers, their thresholds, evaluation and history."""
