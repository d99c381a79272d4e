"""Kizuna (絆): point management and membership for retailers, restaurants and coalitions."""

__version__ = "0.1.0"
