from engine.errors import run_cli
from webdemo.cli import main

raise SystemExit(run_cli(main))
