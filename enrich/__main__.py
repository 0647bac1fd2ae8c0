from enrich.cli import entry

raise SystemExit(entry())
