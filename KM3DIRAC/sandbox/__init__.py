"""Local services (PostgreSQL, Rucio server, DIRAC configuration) for the tests, the benchmarks and the demo."""
