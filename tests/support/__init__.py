"""Local stand-ins shared by the tests, the local run and the benchmark."""
