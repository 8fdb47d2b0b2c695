"""Run the CLI with `python -m vramcalc`."""

from vramcalc.cli import main

main()
