"""The benchmark suite: what enforcement costs on the exec path, at start, under load.

Run as root from the repository root: `python -m bench` (or `make bench`);
`python -m bench --smoke` only checks that every benchmark starts.
"""
