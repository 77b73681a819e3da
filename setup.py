"""Build script: the packages of docs/design.md (section 2) and the compiled `chipping._planner`.

torch is a runtime dependency only; the extension is plain C++17 + pybind11.
"""

from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "chipping": "chipping",
    "sniper": "projects/sniper/sniper",
    "autofocus": "projects/autofocus/autofocus",
}


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, root in PACKAGE_ROOTS.items():
        packages.append(name)
        package_dir[name] = root
        for sub in find_packages(root):
            packages.append(f"{name}.{sub}")
            package_dir[f"{name}.{sub}"] = f"{root}/{sub.replace('.', '/')}"
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

ext_modules = [
    Pybind11Extension(
        "chipping._planner",
        sources=[
            "chipping/csrc/sniper_chips.cpp",
            "chipping/csrc/focus_chips.cpp",
            "chipping/csrc/bindings_plan.cpp",
            "chipping/csrc/bindings.cpp",
        ],
        include_dirs=["chipping/csrc"],
        depends=sorted(glob("chipping/csrc/*.h")),
        cxx_std=17,
        # -ffp-contract=off: the compiled planner must agree bit for bit with its numpy twin
        # chipping/_reference.py (the tests compare them exactly). Without it the compiler may
        # contract a * b + c into one fused multiply-add, which rounds once instead of twice
        # and so changes the last bit of box sizes, scaled coordinates and inside fractions.
        extra_compile_args=["-O3", "-ffp-contract=off"],
    )
]

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
