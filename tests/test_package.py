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


def test_using_a_model_leaves_logging_and_stderr_as_they_were(tmp_path):
    """Paddle's import sets the root logger to INFO with its own handler, warns about ccache, and
    its C++ side prints a glog warning per export: none of that reaches a user's script."""
    code = (
        "import logging, sys, warnings\n"
        "import numpy as np\n"
        "import vsmsvsr\n"
        "from vsmsvsr.engine import Engine\n"
        "warnings.simplefilter('default')\n"
        "root = logging.getLogger()\n"
        "before = (root.level, list(root.handlers))\n"
        f"engine = Engine(vsmsvsr.build_model('PP-MSVSR'), backend='cpu', cache_dir={str(tmp_path)!r})\n"
        "engine(np.zeros((2, 3, 64, 64), np.float32))\n"
        "assert (root.level, list(root.handlers)) == before, (root.level, root.handlers)\n"
        "logging.getLogger('somebody.else').info('not shown: INFO is below the default WARNING')\n"
        "sys.stderr.write('finished\\n')\n"
    )
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "finished\n"
