"""`python -m cvae_bench` is the `cvae-bench` command."""

from cvae_bench.cli import main

main()
