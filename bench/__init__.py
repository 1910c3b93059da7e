"""The Jobline benchmark suite (issue 7): `make bench` / `python -m bench [--quick] [--postgres URL]`.

Starts the whole platform locally (cli.platform), drives it from load generators in separate
processes (bench.loadgen, bench.fleetproc, bench.noop), and reports one table plus JSON."""
