"""The API image has no TensorFlow: importing the API (or the Celery app, as Flower does) must not load it."""

import subprocess
import sys

import pytest

from shared.settings import REPO_ROOT


@pytest.mark.parametrize("module", ["api.main", "worker.celery_app", "worker.tasks"])
def test_import_loads_no_tensorflow(module):
    code = (
        f"import sys, {module}; heavy = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_imports_no_worker_code():
    code = "import sys, api.main; sys.exit(1 if any(m.startswith('worker') for m in sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
