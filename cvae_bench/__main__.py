"""`python -m cvae_bench` is the `cvae-bench` command."""

from cvae_bench.entry import main

main()
