"""Importing the package: no side effects, and one clear error when Paddle is missing."""
import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_without_paddle_names_both_extras():
    proc = _run("import sys; sys.modules['paddle'] = None; import vsmsvsr")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: vsmsvsr needs PaddlePaddle")
    assert "vsmsvsr[cpu]" in last and "vsmsvsr[gpu]" in last


def test_import_has_no_side_effects():
    code = (
        "import os, sys, warnings, logging\n"
        "env, filters = dict(os.environ), list(warnings.filters)\n"
        "handlers = list(logging.getLogger().handlers)\n"
        "import vsmsvsr\n"
        "assert 'paddle' not in sys.modules, 'paddle imported at import time'\n"
        "assert dict(os.environ) == env, 'environment changed'\n"
        "assert list(warnings.filters) == filters, 'warning filters changed'\n"
        "assert list(logging.getLogger().handlers) == handlers, 'logging configured'\n"
        "print(vsmsvsr.__version__)\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.1.0"
