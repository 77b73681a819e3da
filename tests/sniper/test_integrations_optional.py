"""Without the extras, the adapters fail on import with the pip command of their extra (a
fresh interpreter in which sahi / supervision cannot be imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sniper.integrations._optional import import_optional

ROOT = Path(__file__).resolve().parents[2]


def test_import_optional_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r'pip install "sniper-autofocus\[sahi\]"'):
        import_optional("no_such_module_for_this_test", "sahi")
    assert import_optional("json", "sahi").__name__ == "json"


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [
        ("sahi", "sniper.integrations.sahi_model", "sahi"),
        ("sahi", "sniper.integrations.sahi_cli", "sahi"),
        ("supervision", "sniper.integrations.supervision_convert", "supervision"),
    ],
)
def test_adapter_without_its_package(blocked: str, module: str, extra: str) -> None:
    # a None entry in sys.modules makes `import blocked` raise ImportError
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"import {module}\n"
        "from sniper.integrations import supervision_convert as s, sahi_convert as h\n"
        "out = {'boxes': [[0, 0, 1, 1]], 'scores': [1.0], 'classes': [0]}\n"
        f"(s.to_detections if {blocked!r} == 'supervision' else h.to_object_predictions)(out)\n"
    )
    env = dict(os.environ)
    paths = [ROOT, ROOT / "projects" / "sniper", ROOT / "projects" / "autofocus"]
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert f'pip install "sniper-autofocus[{extra}]"' in proc.stderr.strip().splitlines()[-1]
