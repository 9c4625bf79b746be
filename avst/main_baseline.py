"""The baseline (``net_grd_baseline``): ``avst/main_avst.py --model baseline`` with its 20 epochs."""
from avst.main_avst import cli

if __name__ == "__main__":
    raise SystemExit(cli("baseline"))
