"""The worker boundary: hermetic backend processes, their protocol, threads, the machine, durable files."""
