"""The recovery engine: ladders of actions behind gates, verified, journaled."""
