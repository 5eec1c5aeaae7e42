"""One module per `crpo-bench` verb: `add_parser(subparsers)` and `run(args) -> exit code`."""
