"""SIRA fraud scoring: history features, scorers and the synthetic traffic that measures them."""
