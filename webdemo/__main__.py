from webdemo.cli import cli

raise SystemExit(cli())
