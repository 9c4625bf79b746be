"""MSRVTT-QA entry point of the original (``python main_msrvtt.py --task MS-QA``): ``main.py --dataset msrvtt-qa``."""
from masn.main import cli

if __name__ == "__main__":
    cli("msrvtt-qa")
