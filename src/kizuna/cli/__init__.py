"""The `kizuna` command line (Typer; thin: parse, call a service, print with Rich)."""
