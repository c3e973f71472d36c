"""`bankgate-agent`, the host's command line: `main` parses, each subcommand is a module here."""
