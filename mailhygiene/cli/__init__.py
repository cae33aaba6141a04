"""Command-line entry points: parse, pick ``now`` and the actor, call one service, render."""
