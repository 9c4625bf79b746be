"""MSVD-QA entry point of the original (``python main_msvd.py --task MS-QA``): ``main.py --dataset msvd-qa``."""
from masn.main import cli

if __name__ == "__main__":
    cli("msvd-qa")
