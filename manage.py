#!/usr/bin/env python3
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    venv = Path(__file__).resolve().parent / ".venv"
    if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
        # `./manage.py …` found the system Python through the shebang: run the checkout's virtualenv instead.
        os.execv(venv / "bin" / "python", [str(venv / "bin" / "python"), __file__, *sys.argv[1:]])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
