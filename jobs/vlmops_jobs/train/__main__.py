import sys

from ..common.result import run_main
from .trainer import main

sys.exit(run_main(main))
