
from ..common.result import exit_now, run_main
from .trainer import main

exit_now(run_main(main))
