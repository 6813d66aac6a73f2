"""HTTP entry points: parse input, call one service function, map the result to a schema."""
