"""rdsvend benchmarks: ``make bench`` prints one JSON object per line."""
